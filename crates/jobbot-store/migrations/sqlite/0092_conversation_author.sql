-- A contact without a username, found through a group message of theirs: that message (JSON,
-- `MessageAuthor`), through which the conversation's agent can find them again while it holds no
-- reference of its own (`Conversation::contact_author`).
ALTER TABLE conversations ADD COLUMN contact_author TEXT;
