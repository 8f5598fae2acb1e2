"""Campaign policy, pure: contacts, calling windows and holidays, retry/compliance policy, pacing."""
