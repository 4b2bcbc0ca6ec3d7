//! The one parser of sizes on the command line (`--cow-size`,
//! `--chunk-size`, `--block-size`).
//!
//! A size is a number, whole or decimal (`4096`, `1.5`), and a unit:
//! none for bytes, `K`, `M`, `G`, `T` for KiB, MiB, GiB, TiB (binary;
//! `KiB`, `KB` and lower case are read the same), or `s` for 512-byte
//! sectors.  The result is in sectors, so it must come out as a whole
//! number of them: `1.5G` and `4.5K` do, `1.3K` and `100` do not.

/// What a size argument may look like, for error messages and help.
const FORMS: &str =
    "write e.g. 4096 (bytes), 4K, 1.5G or 8s (sectors); K, M, G, T are binary (KiB, MiB, GiB, TiB)";

/// A size in 512-byte sectors, from `N` bytes, `Ns` sectors, or `N` with a
/// binary unit K/M/G/T; `N` may have a decimal fraction.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.contains('.')
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(format!("`{s}` is not a size: {FORMS}"));
    }
    let unit = unit.trim().to_ascii_uppercase();
    // Bytes per unit; sectors are 512 bytes.
    let per_unit: u128 = match unit.as_str() {
        "S" => 512,
        u => match u.strip_suffix("IB").or(u.strip_suffix('B')).unwrap_or(u) {
            "" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            _ => return Err(format!("`{s}`: unknown unit `{}`; {FORMS}", unit.trim())),
        },
    };
    let too_large = || format!("`{s}` is too large");
    // The number as a fraction digits / 10^len(frac), kept exact.
    let scale = 10u128
        .checked_pow(u32::try_from(frac.len()).map_err(|_| too_large())?)
        .ok_or_else(too_large)?;
    let digits: u128 = format!("{whole}{frac}").parse().map_err(|_| too_large())?;
    let scaled_bytes = digits.checked_mul(per_unit).ok_or_else(too_large)?;
    let sector = 512 * scale;
    if scaled_bytes % sector != 0 {
        return Err(if scaled_bytes % scale != 0 {
            format!("`{s}` is not a whole number of bytes, let alone of 512-byte sectors")
        } else {
            format!(
                "`{s}` is {} bytes, not a whole number of 512-byte sectors",
                scaled_bytes / scale
            )
        });
    }
    u64::try_from(scaled_bytes / sector).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn whole_sizes_keep_their_meaning() {
        assert_eq!(parse_size("4K"), Ok(8));
        assert_eq!(parse_size("64KiB"), Ok(128));
        assert_eq!(parse_size("64kb"), Ok(128));
        assert_eq!(parse_size("2G"), Ok(4 << 20));
        assert_eq!(parse_size("1T"), Ok(1 << 31));
        assert_eq!(parse_size("4096s"), Ok(4096));
        assert_eq!(parse_size("8S"), Ok(8));
        assert_eq!(parse_size("1024"), Ok(2), "a bare number is bytes");
        assert_eq!(parse_size(" 512 "), Ok(1));
    }

    #[test]
    fn decimal_sizes_that_are_whole_sectors() {
        assert_eq!(parse_size("1.5G"), Ok(3 << 20));
        assert_eq!(parse_size("0.5K"), Ok(1));
        assert_eq!(parse_size("4.5K"), Ok(9));
        assert_eq!(parse_size("2.25M"), Ok(4608));
        assert_eq!(parse_size(".5M"), Ok(1024));
        assert_eq!(parse_size("512."), Ok(1));
        assert_eq!(parse_size("1024.0"), Ok(2));
    }

    #[test]
    fn fractions_of_a_sector_are_refused_clearly() {
        assert_eq!(
            parse_size("1.3K").unwrap_err(),
            "`1.3K` is not a whole number of bytes, let alone of 512-byte sectors"
        );
        assert_eq!(
            parse_size("1.25K").unwrap_err(),
            "`1.25K` is 1280 bytes, not a whole number of 512-byte sectors"
        );
        assert_eq!(
            parse_size("100").unwrap_err(),
            "`100` is 100 bytes, not a whole number of 512-byte sectors"
        );
        assert!(parse_size("1.5s")
            .unwrap_err()
            .contains("not a whole number"));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "",
            "x",
            "K",
            ".",
            "1.2.3",
            "4Q",
            "-4K",
            "4 KK",
            "99999999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("4Q").unwrap_err().contains("unknown unit `Q`"));
        assert!(parse_size("x").unwrap_err().contains("is not a size"));
        assert!(parse_size("99999999999999T")
            .unwrap_err()
            .contains("too large"));
    }
}
