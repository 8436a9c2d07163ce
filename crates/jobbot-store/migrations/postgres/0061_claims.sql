-- Claims of outbox messages and workflows by the nodes sharing the database (issue #16).

-- The node attempting a pending message, with the fencing token and expiry of the lease of the
-- agent it attempts through: taken in the attempt's own transaction, after checking that lease.
-- Another node may take the message once the claim has expired (the claimer's lease lapsed)
-- and the message is not in doubt on another agent. NULL on a node of its own.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claim_token BIGINT;
ALTER TABLE outbox ADD COLUMN claim_expires_at BIGINT;

-- The node executing an unfinished workflow; another node takes it once the claimer is no
-- longer alive (`cluster_nodes`). NULL on a node of its own.
ALTER TABLE workflows ADD COLUMN claimed_by TEXT;
