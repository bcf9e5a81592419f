-- The vault's records (the audit log lives in a database of its own).
CREATE TABLE modules (
    serial TEXT PRIMARY KEY NOT NULL,
    location TEXT NOT NULL,
    added_at INTEGER NOT NULL
);

-- The module table: each module's newest checkpoint record.
CREATE TABLE module_table (
    serial TEXT PRIMARY KEY NOT NULL REFERENCES modules (serial),
    checkpoint BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE packages (
    device_id BLOB PRIMARY KEY NOT NULL CHECK (length(device_id) = 6),
    package BLOB NOT NULL,
    mac BLOB NOT NULL CHECK (length(mac) = 32),
    customer_id TEXT,
    updated_at INTEGER NOT NULL
);

CREATE TABLE certificates (
    device_id BLOB PRIMARY KEY NOT NULL CHECK (length(device_id) = 6),
    serial INTEGER NOT NULL UNIQUE,
    der BLOB NOT NULL
);

CREATE TABLE customers (
    id TEXT PRIMARY KEY NOT NULL,
    device_id BLOB UNIQUE CHECK (device_id IS NULL OR length(device_id) = 6),
    record BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE indicia (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id BLOB NOT NULL CHECK (length(device_id) = 6),
    customer_id TEXT,
    client_txn TEXT,
    kind TEXT NOT NULL,
    postage INTEGER NOT NULL CHECK (postage >= 0),
    ascending_register INTEGER NOT NULL CHECK (ascending_register >= 0),
    mail_piece_key BLOB NOT NULL CHECK (length(mail_piece_key) = 32),
    bytes BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (device_id, client_txn)
);
CREATE INDEX indicia_by_customer ON indicia (customer_id, id);
CREATE INDEX indicia_by_piece ON indicia (mail_piece_key);

-- Replies already given, by idempotency key (purchases and the like).
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY NOT NULL,
    response BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
