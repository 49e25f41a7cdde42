//! What this instance hears of changes made through others on the same store, and what its
//! caches do about it.

use uuid::Uuid;

use super::Door;

/// News of the store's other writers, from the change listener (`store::notify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Not listening (not yet connected, or the connection was lost): changes made elsewhere
    /// may go unheard, so every request reads links and sharing choices from the store.
    Deaf,
    /// Listening again: every change from now on will be heard. What was cached before may
    /// be stale (changes went unheard), so it is all forgotten before the caches are used.
    Listening,
    /// This person's links or sharing choices changed elsewhere.
    Changed(Uuid),
}

impl Door {
    /// Brings the caches of people's links and sharing choices in line with what was heard.
    pub fn heard(&self, news: Heard) {
        match news {
            Heard::Deaf => self.federation.trust_caches(false),
            Heard::Listening => {
                // INVARIANT: cleared before they are trusted, so nothing read while changes
                // went unheard is used; a read under way now is not kept (the caches compare
                // its start with the clearing).
                self.consents.clear();
                self.federation.forget_everyone();
                self.federation.trust_caches(true);
            }
            Heard::Changed(person) => {
                self.consents.evict(person);
                self.federation.forget_person(person);
            }
        }
    }
}
