//! The catalog's Teams rules end to end over the shipped `config/`: a Pay-As-You-Go user
//! (nina@northwind.co.uk, MCOPSTN_PAYG_1), UK shared-cost numbers paid by credits only, and the
//! international list. Run `cargo build --workspace --bins` first.

use tollgate_tests::daemon::{Daemon, SipRequest, SipResponse};

fn invite(d: &Daemon, from: &str, dial: &str, call_id: &str) -> SipResponse {
    d.udp(&SipRequest::invite(&format!("sip:{from}"), dial, call_id).render())
}

fn balance(d: &Daemon, tenant: &str) -> String {
    let (status, v) = d.get_json(&format!("/v1/tenants/{tenant}"));
    assert_eq!(status, 200, "{v}");
    v["balance"].as_str().unwrap_or_default().to_string()
}

#[test]
fn payg_shared_cost_and_the_international_list_over_sip() {
    let d = Daemon::start();
    let before = balance(&d, "northwind");
    // Pay-As-You-Go: every call from credits, from the first minute, domestic or not.
    for (dial, id) in [("+442079460000", "cat-1"), ("+12125550100", "cat-2")] {
        let r = invite(&d, "nina@northwind.co.uk", dial, id);
        assert_eq!(r.status(), 302, "{}", r.text);
        assert_eq!(r.header("X-Tollgate-Basis"), Some("credits"), "{}", r.text);
    }
    assert_ne!(balance(&d, "northwind"), before, "the grants hold credits");
    // UK shared cost: credits for who has them (amelia), not supported for who has a plan
    // only (oliver); 449 stays barred even with credits.
    let r = invite(&d, "amelia@northwind.co.uk", "+448451234567", "cat-3");
    assert_eq!(r.header("X-Tollgate-Basis"), Some("credits"), "{}", r.text);
    for (from, dial, id, reason) in [
        (
            "oliver@northwind.co.uk",
            "+448451234567",
            "cat-4",
            "destination_not_supported",
        ),
        (
            "amelia@northwind.co.uk",
            "+449091234567",
            "cat-5",
            "destination_not_supported",
        ),
        // Not on the international list, and high risk besides (the catalog's
        // high_risk_prefixes, decided first): North Korea, a satellite phone.
        (
            "amelia@northwind.co.uk",
            "+85021234567",
            "cat-6",
            "high_risk_destination",
        ),
        (
            "amelia@northwind.co.uk",
            "+8816123456789",
            "cat-7",
            "high_risk_destination",
        ),
    ] {
        let r = invite(&d, from, dial, id);
        assert_eq!(r.status(), 403, "{dial}: {}", r.text);
        assert_eq!(
            r.header("X-Tollgate-Reason"),
            Some(reason),
            "{dial}: {}",
            r.text
        );
    }
    // On it: the UAE, from amelia's international pool.
    let r = invite(&d, "amelia@northwind.co.uk", "+97142000000", "cat-8");
    assert_eq!(
        r.header("X-Tollgate-Basis"),
        Some("international_pool"),
        "{}",
        r.text
    );
}
