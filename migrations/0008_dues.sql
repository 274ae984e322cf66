-- Party dues (党费): months, bills (one per member and month), WeChat Pay orders, payments
-- (a bill is paid at most once, an order number and a WeChat transaction credit at most once),
-- verified notifications, incidents for a person, adjustments and imported trade bills.
-- Money is BIGINT fen; times are unix milliseconds (UTC); states are TEXT.

-- A month is opened by its first assessment and settled (closed) by a treasurer; a settled
-- month changes only by adjustments.
CREATE TABLE dues_months (
    month      TEXT PRIMARY KEY,
    status     TEXT NOT NULL CHECK (status IN ('open', 'settled')),
    opened_at  BIGINT NOT NULL,
    opened_by  TEXT NOT NULL,
    settled_at BIGINT,
    settled_by TEXT
);

-- Per-member dues settings: a hardship exemption (with its reason) and a voluntary amount.
CREATE TABLE dues_profiles (
    member_id     BIGINT PRIMARY KEY REFERENCES members (id),
    exempt_reason TEXT,
    voluntary_fen BIGINT CHECK (voluntary_fen IS NULL OR voluntary_fen > 0),
    updated_at    BIGINT NOT NULL,
    updated_by    TEXT NOT NULL
);

-- One bill per member and month, with the snapshot that produced it: the rule, the rule's
-- amount, the base (income or pension, encrypted like the roster's) and the org unit then.
CREATE TABLE dues_bills (
    id            {{id}},
    member_id     BIGINT NOT NULL REFERENCES members (id),
    month         TEXT NOT NULL,
    org_unit_id   BIGINT NOT NULL REFERENCES org_units (id),
    amount_fen    BIGINT NOT NULL CHECK (amount_fen >= 0),
    standard_fen  BIGINT NOT NULL,
    rule          TEXT NOT NULL,
    standard_rule TEXT NOT NULL,
    base_enc      TEXT,
    note          TEXT,
    status        TEXT NOT NULL CHECK (status IN ('unpaid', 'paying', 'paid', 'exempt')),
    paid_fen      BIGINT,
    paid_at       BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (member_id, month)
);
CREATE INDEX dues_bills_month_unit ON dues_bills (month, org_unit_id);

-- WeChat Pay orders (JSAPI). At most one live order (created/prepaid) per bill; every
-- parameter sent to WeChat is kept so a retry sends exactly the same order.
CREATE TABLE dues_orders (
    id                {{id}},
    bill_id           BIGINT NOT NULL REFERENCES dues_bills (id),
    out_trade_no      TEXT NOT NULL UNIQUE,
    amount_fen        BIGINT NOT NULL CHECK (amount_fen > 0),
    payer_openid      TEXT NOT NULL,
    description       TEXT NOT NULL,
    notify_url        TEXT NOT NULL,
    time_expire       BIGINT NOT NULL,
    prepay_id         TEXT,
    prepay_expires_at BIGINT,
    status            TEXT NOT NULL CHECK (status IN ('created', 'prepaid', 'paid', 'closed', 'failed')),
    transaction_id    TEXT,
    trade_state       TEXT,
    last_error        TEXT,
    next_check_at     BIGINT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_until       BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX dues_orders_one_live ON dues_orders (bill_id) WHERE status IN ('created', 'prepaid');
CREATE INDEX dues_orders_due ON dues_orders (status, next_check_at);
CREATE INDEX dues_orders_bill ON dues_orders (bill_id);

-- Credited payments: each UNIQUE makes a second credit impossible, whoever tries it.
CREATE TABLE dues_payments (
    id              {{id}},
    bill_id         BIGINT NOT NULL UNIQUE REFERENCES dues_bills (id),
    order_id        BIGINT NOT NULL UNIQUE REFERENCES dues_orders (id),
    out_trade_no    TEXT NOT NULL UNIQUE,
    transaction_id  TEXT NOT NULL UNIQUE,
    amount_fen      BIGINT NOT NULL,
    payer_total_fen BIGINT,
    bill_month      TEXT NOT NULL,
    org_unit_id     BIGINT NOT NULL,
    success_time    TEXT,
    paid_at         BIGINT NOT NULL,
    source          TEXT NOT NULL CHECK (source IN ('notification', 'query')),
    created_at      BIGINT NOT NULL
);
CREATE INDEX dues_payments_paid_at ON dues_payments (paid_at);
CREATE INDEX dues_payments_month ON dues_payments (bill_month);

-- Every verified notification, once per WeChat notification id, stored before the answer.
-- The body is kept as received (its resource is still encrypted).
CREATE TABLE dues_notifications (
    id              {{id}},
    notification_id TEXT NOT NULL UNIQUE,
    event_type      TEXT NOT NULL,
    out_trade_no    TEXT,
    transaction_id  TEXT,
    outcome         TEXT NOT NULL,
    body            TEXT NOT NULL,
    received_at     BIGINT NOT NULL
);

-- Something a person must look at: a mismatched or unknown payment, a trade-bill difference.
-- Repeats of the same problem count up `occurrences` on one row (dedup_key).
CREATE TABLE dues_incidents (
    id             {{id}},
    kind           TEXT NOT NULL,
    dedup_key      TEXT NOT NULL UNIQUE,
    bill_id        BIGINT,
    org_unit_id    BIGINT,
    out_trade_no   TEXT,
    transaction_id TEXT,
    expected_fen   BIGINT,
    actual_fen     BIGINT,
    details        TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    occurrences    BIGINT NOT NULL DEFAULT 1,
    resolved_by    TEXT,
    resolution     TEXT,
    resolved_at    BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX dues_incidents_status ON dues_incidents (status, id);
CREATE INDEX dues_incidents_bill ON dues_incidents (bill_id);

CREATE TABLE dues_adjustments (
    id             {{id}},
    bill_id        BIGINT NOT NULL REFERENCES dues_bills (id),
    old_amount_fen BIGINT NOT NULL,
    new_amount_fen BIGINT NOT NULL,
    reason         TEXT NOT NULL,
    actor          TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX dues_adjustments_bill ON dues_adjustments (bill_id);

-- Imported WeChat Pay trade bills (交易账单), one row per Beijing day, replaced on re-import.
CREATE TABLE dues_tradebills (
    bill_date      TEXT PRIMARY KEY,
    row_count      BIGINT NOT NULL,
    matched        BIGINT NOT NULL,
    total_fen      BIGINT NOT NULL,
    incident_count BIGINT NOT NULL,
    fetched_at     BIGINT NOT NULL,
    fetched_by     TEXT NOT NULL
);
