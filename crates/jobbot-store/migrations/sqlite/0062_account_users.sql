-- The Telegram user of each jobbot account, recorded by the node that connects it (issue #16):
-- every node then knows the posts of every node's accounts as jobbot's own.
CREATE TABLE account_users (
    session TEXT   NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL
) STRICT;
