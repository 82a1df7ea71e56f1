//! Resource quantities (`resource.Quantity`) as integers: what the scheduler, the
//! ResourceQuota accounting and anyone else comparing amounts share.

/// Parses a quantity and returns `ceil(value · 10^scale)` (scale 3 gives milli-units),
/// rounding away from zero as `Quantity.MilliValue()` does.
pub fn parse_scaled_wide(text: &str, scale: i32) -> Result<i128, &'static str> {
    let s = text.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let mut mantissa: i128 = 0;
    for c in int_part.chars().chain(frac_part.chars()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(c as u8 - b'0')))
            .ok_or("quantity too large")?;
    }
    let mut exp10 = scale - frac_part.len() as i32;
    let mut exp2 = 0u32;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        other => {
            let exp = other
                .strip_prefix(['e', 'E'])
                .and_then(|e| e.parse::<i32>().ok())
                .ok_or("unable to parse quantity's suffix")?;
            exp10 = exp10.checked_add(exp).ok_or("quantity too large")?;
        }
    }
    let mut value = mantissa
        .checked_mul(1i128 << exp2)
        .ok_or("quantity too large")?;
    if exp10 >= 0 {
        let factor = 10i128
            .checked_pow(exp10 as u32)
            .ok_or("quantity too large")?;
        value = value.checked_mul(factor).ok_or("quantity too large")?;
    } else if value != 0 {
        let divisor = 10i128
            .checked_pow(exp10.unsigned_abs())
            .unwrap_or(i128::MAX);
        // Round away from zero, like `Quantity.Value()` / `MilliValue()`.
        value = (value + divisor - 1) / divisor;
    }
    Ok(if negative { -value } else { value })
}

/// [`parse_scaled_wide`] as an `i64` (every amount a node or pod holds fits).
pub fn parse_scaled(text: &str, scale: i32) -> Result<i64, &'static str> {
    i64::try_from(parse_scaled_wide(text, scale)?).map_err(|_| "quantity too large")
}
