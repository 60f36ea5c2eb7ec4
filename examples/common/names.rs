//! Command-line values picked by name from Kiln's name tables, with the names listed in
//! `--help` ("possible values") from the tables themselves.

use std::str::FromStr;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

/// A parser of `T` that accepts `names` (listed in `--help`) and `aliases` (accepted, not
/// listed).
pub fn by_name<T>(
    names: &[&'static str],
    aliases: impl IntoIterator<Item = &'static str>,
) -> impl TypedValueParser<Value = T>
where
    T: FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    let listed = names.iter().map(|name| PossibleValue::new(*name));
    let hidden = aliases
        .into_iter()
        .map(|alias| PossibleValue::new(alias).hide(true));
    PossibleValuesParser::new(listed.chain(hidden)).try_map(|name| name.parse::<T>())
}
