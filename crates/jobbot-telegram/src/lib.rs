//! jobbot-telegram
