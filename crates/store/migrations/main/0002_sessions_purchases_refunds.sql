-- Customer sessions: the highest message counter seen, so a sealed message is
-- taken once. The id is the SHA-256 of the session token.
CREATE TABLE sessions (
    id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 32),
    device_id BLOB NOT NULL CHECK (length(device_id) = 6),
    last_counter INTEGER NOT NULL CHECK (last_counter >= 0),
    created_at INTEGER NOT NULL
);

-- Purchases of postage: the client's id, amount and control total; a pending
-- purchase waits for the provider's download.
CREATE TABLE purchases (
    device_id BLOB NOT NULL CHECK (length(device_id) = 6),
    id TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    control_total INTEGER NOT NULL CHECK (control_total >= 0),
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'refused')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, id)
);
CREATE INDEX purchases_pending ON purchases (status, created_at);

-- A customer's request to have an unused indicium refunded.
ALTER TABLE indicia ADD COLUMN refund_requested_at INTEGER;
