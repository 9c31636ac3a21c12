//! The numbering plan: dialed strings to E.164, region and number type.
//!
//! Built once from libphonenumber's `PhoneNumberMetadata.xml` and `ShortNumberMetadata.xml`
//! (vendored in `engine/data/libphonenumber`, Apache-2.0), then read-only: `classify` takes
//! `&self` and writes nothing shared, so any number of threads classify in parallel.

mod types;

pub use types::{Destination, NumberError, NumberType, Region, Why, MAX_E164_LEN};

/// The compiled numbering plan. (Work in progress on `main`: the metadata compiler lands with
/// issue 2; until then `classify` refuses everything.)
pub struct NumberingPlan {}

/// The metadata could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("numbering metadata: {0}")]
pub struct MetadataError(pub String);

impl NumberingPlan {
    /// The plan compiled from the vendored metadata.
    pub fn builtin() -> Result<NumberingPlan, MetadataError> {
        Ok(NumberingPlan {})
    }

    /// Resolves `dialed` as dialed by a caller whose license location is `caller_region`.
    pub fn classify(
        &self,
        dialed: &str,
        caller_region: Region,
    ) -> Result<Destination, NumberError> {
        let _ = (dialed, caller_region);
        Err(NumberError::Invalid(Why::NoMatch))
    }
}
