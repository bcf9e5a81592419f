-- The key management system's archive of security domains: each domain's
-- directory (signed by the manufacturing box's domain key set) and its keys
-- sealed for the archive.
CREATE TABLE kms_domains (
    domain TEXT PRIMARY KEY NOT NULL,
    directory BLOB NOT NULL,
    sealed_keys BLOB NOT NULL,
    created INTEGER NOT NULL CHECK (created >= 0)
);

-- The last key id allocated in each domain (0: none yet). Ids are never
-- reused, so this only grows.
CREATE TABLE kms_key_ids (
    domain TEXT PRIMARY KEY NOT NULL REFERENCES kms_domains (domain),
    last_key_id INTEGER NOT NULL CHECK (last_key_id >= 0)
);

-- Each domain master key's history: records numbered from 0 per key, with
-- strictly increasing times. The install domain is `domain`; `device` is the
-- meter a record is about, if any.
CREATE TABLE kms_records (
    domain TEXT NOT NULL REFERENCES kms_domains (domain),
    key_id INTEGER NOT NULL CHECK (key_id > 0),
    seq INTEGER NOT NULL CHECK (seq >= 0),
    sub_domain TEXT REFERENCES kms_domains (domain),
    device BLOB CHECK (device IS NULL OR length(device) = 6),
    status TEXT NOT NULL
        CHECK (status IN ('new', 'installed', 'bad', 'active', 'obsolete')),
    time INTEGER NOT NULL CHECK (time >= 0),
    signer TEXT NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (domain, key_id, seq)
);
CREATE INDEX kms_records_by_device ON kms_records (domain, device, key_id);
CREATE INDEX kms_records_by_sub_domain ON kms_records (sub_domain, domain, key_id);
