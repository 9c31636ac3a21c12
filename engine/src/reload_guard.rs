//! The reload guard: a new directory that would take service away from most callers is refused
//! unless the operator forces it.
//!
//! A reload is what deploy tools and editors trigger by themselves (`[directory].watch`): a
//! truncated `users.csv` (a half-written copy, an editor's empty buffer) or an emptied
//! `catalog.toml` parses cleanly and would, once swapped in, answer every caller
//! `unknown_caller` or `no_phone_system` within 300 ms. Both are far likelier to be accidents
//! than intent, so a reload that drops more than a set share of the users, or of the users who
//! hold Phone System (what an emptied catalog does), or that leaves no SKU at all, keeps the old
//! snapshot. An operator who means it forces the reload (`POST /v1/reload?force=true`). Start-up
//! has nothing to compare with and is not guarded.

use std::fmt;

use crate::directory::Snapshot;

/// What a reload may take away without being forced (`[directory]` of `tollgate.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReloadGuard {
    /// The largest share of users, or of users with Phone System, that a reload may remove, in
    /// percent (`100`: no limit).
    pub max_drop_percent: u8,
}

impl Default for ReloadGuard {
    fn default() -> Self {
        ReloadGuard {
            max_drop_percent: 50,
        }
    }
}

/// Figures of a snapshot the guard compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figures {
    /// Users in the directory (a truncated `users.csv` drops them).
    pub users: usize,
    /// Users holding Phone System (an emptied catalog drops them to 0: rule 3 refuses all).
    pub phone_system_users: usize,
    /// SKUs in the catalog.
    pub skus: usize,
}

impl Figures {
    /// The figures of a snapshot.
    pub fn of(snap: &Snapshot) -> Figures {
        Figures {
            users: snap.users.len(),
            phone_system_users: snap.users.iter().filter(|u| u.phone_system).count(),
            skus: snap.catalog.skus.len(),
        }
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} users, {} with Phone System, {} SKUs",
            self.users, self.phone_system_users, self.skus
        )
    }
}

/// A reload the guard refused: what it would have taken away.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused: the new directory has {new} where the running one has {old} ({why}); \
     force the reload if this is meant (POST /v1/reload?force=true)"
)]
pub struct Shrink {
    /// The running directory.
    pub old: Figures,
    /// The refused one.
    pub new: Figures,
    /// Which limit it broke, in words.
    pub why: String,
}

impl ReloadGuard {
    /// `Ok` when `new` may replace `old` without being forced.
    pub fn check(&self, old: &Snapshot, new: &Snapshot) -> Result<(), Shrink> {
        self.check_figures(Figures::of(old), Figures::of(new))
    }

    /// [`ReloadGuard::check`] on figures already taken (the running snapshot's are kept, so a
    /// reload need not count them again).
    pub fn check_figures(&self, old: Figures, new: Figures) -> Result<(), Shrink> {
        let why = if old.skus > 0 && new.skus == 0 {
            Some("the catalog has no SKU".to_string())
        } else {
            [
                ("users", old.users, new.users),
                (
                    "users with Phone System",
                    old.phone_system_users,
                    new.phone_system_users,
                ),
            ]
            .into_iter()
            .find(|&(_, o, n)| self.too_many_gone(o, n))
            .map(|(what, o, n)| {
                format!(
                    "{} % of the {what} gone, more than the {} % allowed",
                    (o - n) * 100 / o,
                    self.max_drop_percent
                )
            })
        };
        match why {
            Some(why) => Err(Shrink { old, new, why }),
            None => Ok(()),
        }
    }

    /// Whether going from `old` to `new` removes more than the allowed share.
    fn too_many_gone(&self, old: usize, new: usize) -> bool {
        let gone = old.saturating_sub(new) as u128;
        gone * 100 > old as u128 * u128::from(self.max_drop_percent.min(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(users: usize, phone_system_users: usize, skus: usize) -> Figures {
        Figures {
            users,
            phone_system_users,
            skus,
        }
    }

    #[test]
    fn at_the_limit_passes_past_it_is_refused() {
        let g = ReloadGuard::default();
        assert!(g.check_figures(f(10, 10, 9), f(5, 5, 9)).is_ok());
        let e = g.check_figures(f(10, 10, 9), f(4, 4, 9)).unwrap_err();
        assert_eq!(e.why, "60 % of the users gone, more than the 50 % allowed");
        // Growth, and an empty directory at both ends, pass.
        assert!(g.check_figures(f(10, 10, 9), f(1000, 1000, 9)).is_ok());
        assert!(g.check_figures(f(0, 0, 9), f(0, 0, 9)).is_ok());
        // A truncated users.csv.
        assert!(g.check_figures(f(3, 3, 9), f(0, 0, 9)).is_err());
    }

    #[test]
    fn an_emptied_catalog_is_refused() {
        let g = ReloadGuard::default();
        // Users stay, but nobody holds Phone System any more.
        let e = g.check_figures(f(10, 10, 9), f(10, 0, 9)).unwrap_err();
        assert!(e.why.contains("users with Phone System"), "{e}");
        let e = g.check_figures(f(10, 10, 9), f(10, 10, 0)).unwrap_err();
        assert!(e.to_string().contains("the catalog has no SKU"), "{e}");
    }

    #[test]
    fn a_hundred_percent_allows_anything_but_an_empty_catalog() {
        let g = ReloadGuard {
            max_drop_percent: 100,
        };
        assert!(g.check_figures(f(10, 10, 9), f(0, 0, 9)).is_ok());
        assert!(g.check_figures(f(10, 10, 9), f(10, 10, 0)).is_err());
    }
}
