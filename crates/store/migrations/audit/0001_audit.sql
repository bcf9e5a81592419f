-- Each module's audit entries, in order, exactly as the module made them.
CREATE TABLE audit_entries (
    module_serial TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 0),
    entry BLOB NOT NULL,
    stored_at INTEGER NOT NULL,
    PRIMARY KEY (module_serial, seq)
);
