use super::*;

#[test]
fn accepts_valid_numbers() {
    // 943 476 5919 is the NHS's published example; 9990000026-style test-range numbers too.
    for n in ["9434765919", "943 476 5919", "9990000018"] {
        assert!(NhsNumber::parse(n).is_ok(), "{n} should be valid");
    }
}

#[test]
fn rejects_bad_check_digit() {
    assert_eq!(
        NhsNumber::parse("9434765918"),
        Err(NhsNumberError::CheckDigit)
    );
}

#[test]
fn rejects_numbers_whose_check_would_be_ten() {
    // "000000006": weighted sum 6 * 2 = 12, remainder 1, so 11 - 1 = 10: never issued.
    assert_eq!(check_digit(b"000000006"), None);
    assert_eq!(
        NhsNumber::parse("0000000060"),
        Err(NhsNumberError::CheckDigit)
    );
}

#[test]
fn rejects_wrong_shapes() {
    for n in [
        "",
        "943476591",
        "94347659190",
        "94347659a9",
        "９４３４７６５９１９",
        "943-476-5919",
    ] {
        assert_eq!(NhsNumber::parse(n), Err(NhsNumberError::Format), "{n:?}");
    }
}

#[test]
fn debug_never_shows_the_digits() {
    let n = NhsNumber::parse("9434765919").expect("valid");
    assert!(!format!("{n:?}").contains("943"));
}
