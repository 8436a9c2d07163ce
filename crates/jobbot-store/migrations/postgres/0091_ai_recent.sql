-- The conversations page lists the AI records written last (`AiStore::recent_ai_records`).
CREATE INDEX ai_conversations_by_update ON ai_conversations (updated_at DESC, conversation_id DESC);
