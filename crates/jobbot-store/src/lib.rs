//! jobbot-store
