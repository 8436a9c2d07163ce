-- AI turns are stored workflows too (`ai_turn`, SQLite 0052).
ALTER TABLE workflows DROP CONSTRAINT workflows_kind_check;
ALTER TABLE workflows ADD CONSTRAINT workflows_kind_check
    CHECK (kind IN ('auto_response', 'relay_to_topic', 'ai_turn'));
