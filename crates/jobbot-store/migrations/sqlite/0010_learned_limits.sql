-- What the scheduler learned about each agent account's limits (issue #12): the paced rate, the
-- burst and the search bounds of messages.sendMessage, and the daily budget of first messages, as
-- the JSON of `jobbot_core::scheduling::LearnedLimits`. One row per account, replaced on change;
-- restored at start so a restart does not re-learn the limits by flooding the account.

CREATE TABLE learned_limits (
    agent      TEXT    NOT NULL PRIMARY KEY,
    learned    TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
