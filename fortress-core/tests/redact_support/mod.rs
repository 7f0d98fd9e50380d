//! Seeded generators for the redaction tests: labelled samples per entity type, and a
//! clean corpus (code, logs, prose full of numbers) that must stay untouched.
#![allow(dead_code, unreachable_pub)]

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// One labelled text: where each planted value is and what it is.
pub struct Sample {
    pub text: String,
    pub labels: Vec<(usize, usize, &'static str)>,
}

/// Builds a text from pieces, recording labels.
#[derive(Default)]
pub struct Builder {
    text: String,
    labels: Vec<(usize, usize, &'static str)>,
}

impl Builder {
    pub fn plain(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }
    pub fn value(&mut self, entity: &'static str, s: &str) -> &mut Self {
        let start = self.text.len();
        self.text.push_str(s);
        self.labels.push((start, self.text.len(), entity));
        self
    }
    pub fn done(&mut self) -> Sample {
        Sample {
            text: std::mem::take(&mut self.text),
            labels: std::mem::take(&mut self.labels),
        }
    }
}

pub const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "Wei",
    "Aisha",
    "Carlos",
    "Sofia",
    "Hiroshi",
    "Olga",
    "Kwame",
    "Priya",
    "Lukas",
    "Chloé",
    "Mateo",
    "Fatima",
    "Noah",
    "Emma",
    "Ananya",
    "Ivan",
    "Zoe",
    "Omar",
];
pub const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Nguyen",
    "O'Brien",
    "Müller",
    "Kowalski",
    "Tanaka",
    "Okafor",
    "Rossi",
    "Dubois",
    "Patel",
    "Kim",
    "Santos",
    "Ivanova",
    "Haddad",
    "Lindqvist",
    "Mbeki",
    "Schmidt",
    "Fernández",
    "Chen",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "corp.example.co.uk",
    "hospital.example.net",
    "example.io",
    "sub.domain.example.de",
    "example.health",
    "uni.example.edu",
];
const WORDS: &[&str] = &[
    "the", "report", "shows", "that", "we", "shipped", "update", "for", "customer", "account",
    "please", "review", "ticket", "and", "reply", "soon", "status", "pending", "thanks", "note",
    "follow", "up", "with", "team", "about", "invoice", "meeting", "agenda", "on",
];

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn pick<'a>(r: &mut StdRng, items: &[&'a str]) -> &'a str {
    items.choose(r).copied().unwrap_or("")
}

fn digits(r: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + r.gen_range(0..10u8)))
        .collect()
}

fn alnum(r: &mut StdRng, n: usize, alphabet: &[u8]) -> String {
    (0..n)
        .map(|_| char::from(alphabet[r.gen_range(0..alphabet.len())]))
        .collect()
}

const B62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn filler(r: &mut StdRng, n: usize) -> String {
    (0..n).map(|_| pick(r, WORDS)).collect::<Vec<_>>().join(" ")
}

pub fn name(r: &mut StdRng) -> String {
    format!("{} {}", pick(r, FIRST), pick(r, LAST))
}

pub fn email(r: &mut StdRng) -> String {
    let first = pick(
        r,
        &[
            "jane",
            "bob",
            "a.lee",
            "m_garcia",
            "chen.wei",
            "pat+news",
            "o.okafor",
            "x9",
            "sales-team",
        ],
    );
    let n = if r.gen_bool(0.5) {
        {
            let k = r.gen_range(1..4);
            digits(r, k)
        }
    } else {
        String::new()
    };
    format!("{first}{n}@{}", pick(r, DOMAINS))
}

fn nxx(r: &mut StdRng) -> String {
    loop {
        let s = format!("{}{}", r.gen_range(2..10), digits(r, 2));
        if &s[1..] != "11" {
            return s;
        }
    }
}

pub fn phone(r: &mut StdRng) -> String {
    let (a, e, n) = (nxx(r), nxx(r), digits(r, 4));
    match r.gen_range(0..9) {
        0 => format!("({a}) {e}-{n}"),
        1 => format!("{a}-{e}-{n}"),
        2 => format!("{a}.{e}.{n}"),
        3 => format!("+1 {a} {e} {n}"),
        4 => format!("1-{a}-{e}-{n}"),
        5 => format!("+1{a}{e}{n}"),
        6 => format!("+44 20 {} {}", digits(r, 4), digits(r, 4)),
        7 => format!("+49 30 {}", digits(r, 7)),
        _ => format!(
            "+33 {} {} {} {} {}",
            r.gen_range(1..10),
            digits(r, 2),
            digits(r, 2),
            digits(r, 2),
            digits(r, 2)
        ),
    }
}

pub fn ssn(r: &mut StdRng) -> String {
    let area = loop {
        let a = r.gen_range(1..900);
        if a != 666 {
            break a;
        }
    };
    let group = r.gen_range(1..100);
    let serial = r.gen_range(1..10000);
    let sep = if r.gen_bool(0.8) { "-" } else { " " };
    format!("{area:03}{sep}{group:02}{sep}{serial:04}")
}

fn luhn_complete(prefix: &str, len: usize, r: &mut StdRng) -> String {
    let mut s = prefix.to_owned();
    s.push_str(&digits(r, len - prefix.len() - 1));
    for check in 0..10 {
        let candidate = format!("{s}{check}");
        let sum: u32 = candidate
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, b)| {
                let d = u32::from(b - b'0');
                if i % 2 == 1 {
                    if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
                } else {
                    d
                }
            })
            .sum();
        if sum % 10 == 0 {
            return candidate;
        }
    }
    unreachable!()
}

pub fn card(r: &mut StdRng) -> String {
    let (prefix, len): (String, usize) = match r.gen_range(0..6) {
        0 => ("4".into(), 16),
        1 => (format!("5{}", r.gen_range(1..6)), 16),
        2 => (format!("{}", r.gen_range(2221..2721)), 16),
        3 => (if r.gen_bool(0.5) { "34" } else { "37" }.into(), 15),
        4 => ("6011".into(), 16),
        _ => (format!("35{}", r.gen_range(28..90)), 16),
    };
    let number = luhn_complete(&prefix, len, r);
    match r.gen_range(0..3) {
        0 => number,
        1 if len == 16 => number
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" "),
        1 => format!("{} {} {}", &number[..4], &number[4..10], &number[10..]),
        _ if len == 16 => number
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("-"),
        _ => format!("{}-{}-{}", &number[..4], &number[4..10], &number[10..]),
    }
}

pub fn iban(r: &mut StdRng) -> String {
    let (cc, len) = *[
        ("DE", 22),
        ("GB", 22),
        ("FR", 27),
        ("NL", 18),
        ("ES", 24),
        ("IT", 27),
        ("CH", 21),
        ("NO", 15),
        ("PL", 28),
        ("BE", 16),
    ]
    .choose(r)
    .unwrap();
    let bban: String = if cc == "GB" || cc == "NL" {
        format!(
            "{}{}",
            alnum(r, 4, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
            digits(r, len - 8)
        )
    } else {
        digits(r, len - 4)
    };
    let rearranged = format!("{bban}{cc}00");
    let mut rem = 0u32;
    for b in rearranged.bytes() {
        rem = if b.is_ascii_digit() {
            (rem * 10 + u32::from(b - b'0')) % 97
        } else {
            (rem * 100 + u32::from(b - b'A') + 10) % 97
        };
    }
    let compact = format!("{cc}{:02}{bban}", 98 - rem);
    if r.gen_bool(0.5) {
        compact
    } else {
        compact
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub fn ip(r: &mut StdRng) -> String {
    if r.gen_bool(0.6) {
        let first = loop {
            let f = r.gen_range(1..255);
            if f != 127 {
                break f;
            }
        };
        format!(
            "{first}.{}.{}.{}",
            r.gen_range(0..256),
            r.gen_range(0..256),
            r.gen_range(1..255)
        )
    } else {
        let groups: Vec<String> = (0..8)
            .map(|_| format!("{:x}", r.gen_range(0..0x10000u32)))
            .collect();
        match r.gen_range(0..3) {
            0 => format!("2001:db8:{}", groups[2..].join(":")),
            1 => format!("fe80::{}:{}", groups[0], groups[1]),
            _ => format!("2a00:1450:{}::{}", groups[0], r.gen_range(1..0x1000)),
        }
    }
}

pub fn date(r: &mut StdRng) -> String {
    let (y, m, d) = (
        r.gen_range(1930..2020),
        r.gen_range(1..13),
        r.gen_range(1..29),
    );
    const MONTHS: &[&str] = &[
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    match r.gen_range(0..6) {
        0 => format!("{y}-{m:02}-{d:02}"),
        1 => format!("{m:02}/{d:02}/{y}"),
        2 => format!("{d}.{m:02}.{y}"),
        3 => format!("{} {d}, {y}", MONTHS[m - 1]),
        4 => format!("{d} {} {y}", &MONTHS[m - 1][..3]),
        _ => format!("{m}/{d}/{y}"),
    }
}

pub fn mrn(r: &mut StdRng) -> String {
    match r.gen_range(0..3) {
        0 => {
            let k = r.gen_range(6..11);
            digits(r, k)
        }
        1 => format!(
            "{}{}",
            alnum(r, 2, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
            digits(r, 7)
        ),
        _ => format!("MR-{}", digits(r, 8)),
    }
}

fn jwt(r: &mut StdRng) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = e.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = e.encode(format!(
        r#"{{"sub":"{}","iat":{}}}"#,
        digits(r, 8),
        digits(r, 10)
    ));
    format!("{header}.{payload}.{}", alnum(r, 43, B64URL))
}

pub fn secret(r: &mut StdRng) -> String {
    match r.gen_range(0..9) {
        0 => format!("sk-ant-api03-{}AA", alnum(r, 93, B64URL)),
        1 => format!("AKIA{}", alnum(r, 16, UPPER_DIGITS)),
        2 => format!("ghp_{}", alnum(r, 36, B62)),
        3 => format!("github_pat_{}_{}", alnum(r, 22, B62), alnum(r, 59, B62)),
        4 => format!(
            "xoxb-{}-{}-{}",
            digits(r, 12),
            digits(r, 13),
            alnum(r, 24, B62)
        ),
        5 => jwt(r),
        6 => {
            let body: Vec<String> = (0..r.gen_range(3..12))
                .map(|_| {
                    alnum(
                        r,
                        64,
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                    )
                })
                .collect();
            let kind = pick(r, &["", "RSA ", "EC ", "OPENSSH "]);
            format!(
                "-----BEGIN {kind}PRIVATE KEY-----\n{}\n-----END {kind}PRIVATE KEY-----",
                body.join("\n")
            )
        }
        7 => format!(
            "xapp-1-{}-{}-{}",
            alnum(r, 11, UPPER_DIGITS),
            digits(r, 13),
            alnum(r, 64, b"0123456789abcdef")
        ),
        _ => format!("ASIA{}", alnum(r, 16, UPPER_DIGITS)),
    }
}

/// A labelled sample of `entity` in one of several realistic contexts.
pub fn sample(r: &mut StdRng, entity: &'static str) -> Sample {
    let mut b = Builder::default();
    let pre = {
        let k = r.gen_range(0..6);
        filler(r, k)
    };
    if !pre.is_empty() {
        b.plain(&pre).plain(" ");
    }
    match entity {
        "EMAIL" => {
            let v = email(r);
            match r.gen_range(0..4) {
                0 => b.plain("Contact ").value(entity, &v).plain(" for details."),
                1 => b
                    .plain("From: ")
                    .plain(&name(r))
                    .plain(" <")
                    .value(entity, &v)
                    .plain(">"),
                2 => b.plain("{\"email\": \"").value(entity, &v).plain("\"}"),
                _ => b.plain("reply-to=").value(entity, &v).plain(";"),
            };
        }
        "PHONE" => {
            let v = phone(r);
            let ctx = pick(
                r,
                &[
                    "Call ",
                    "phone: ",
                    "Reach me at ",
                    "tel ",
                    "mobile: ",
                    "fax ",
                    "",
                    "(cell) ",
                ],
            );
            b.plain(ctx)
                .value(entity, &v)
                .plain(pick(r, &[".", "", " today", ","]));
        }
        "SSN" => {
            if r.gen_bool(0.15) {
                let v = ssn(r).replace(['-', ' '], "");
                b.plain(pick(r, &["SSN: ", "ssn ", "Social Security number "]))
                    .value(entity, &v);
            } else {
                let v = ssn(r);
                b.plain(pick(
                    r,
                    &["SSN ", "social security ", "", "id check: ", "ssn="],
                ))
                .value(entity, &v)
                .plain(pick(r, &["", ".", " on file"]));
            }
        }
        "CARD" => {
            let v = card(r);
            b.plain(pick(
                r,
                &[
                    "card ",
                    "Visa ending ",
                    "paid with ",
                    "cc: ",
                    "PAN=",
                    "",
                    "number ",
                ],
            ))
            .value(entity, &v)
            .plain(pick(r, &["", ".", " exp 12/27"]));
        }
        "IBAN" => {
            let v = iban(r);
            b.plain(pick(r, &["IBAN ", "wire to ", "account: ", ""]))
                .value(entity, &v)
                .plain(pick(r, &["", ".", " (EUR)"]));
        }
        "IP" => {
            let v = ip(r);
            b.plain(pick(
                r,
                &["client ", "from ", "src=", "remote_addr: ", "login from "],
            ))
            .value(entity, &v)
            .plain(pick(r, &["", " port 443", ".", ","]));
        }
        "DOB" => {
            let v = date(r);
            b.plain(pick(
                r,
                &[
                    "DOB: ",
                    "date of birth ",
                    "born on ",
                    "Birth date: ",
                    "D.O.B. ",
                    "patient (dob) ",
                    "birthday: ",
                ],
            ))
            .value(entity, &v)
            .plain(pick(r, &["", ".", ", age 40"]));
        }
        "MRN" => {
            let v = mrn(r);
            b.plain(pick(
                r,
                &[
                    "MRN: ",
                    "MRN ",
                    "medical record number ",
                    "Medical record #",
                    "mrn=",
                ],
            ))
            .value(entity, &v)
            .plain(pick(r, &["", ".", " admitted"]));
        }
        "SECRET" => match r.gen_range(0..5) {
            0 => {
                b.plain("Authorization: Bearer ")
                    .value(entity, &alnum(r, 40, B64URL));
            }
            1 => {
                b.plain(pick(r, &["api_key=", "API_KEY: ", "\"client_secret\": \""]))
                    .value(entity, &format!("{}{}", alnum(r, 28, B62), digits(r, 4)))
                    .plain("\"");
            }
            2 => {
                b.plain("password: ")
                    .value(entity, &format!("{}{}!", alnum(r, 8, B62), digits(r, 2)));
            }
            _ => {
                let v = secret(r);
                b.plain(pick(r, &["key ", "export TOKEN=", "", "use "]))
                    .value(entity, &v)
                    .plain(pick(r, &["", " now", "\n"]));
            }
        },
        "NAME" => {
            let v = name(r);
            let key = pick(
                r,
                &[
                    "patient_name",
                    "first_name",
                    "fullName",
                    "customer_name",
                    "last_name",
                ],
            );
            if r.gen_bool(0.5) {
                b.plain(&format!("{{\"{key}\": \""))
                    .value(entity, &v)
                    .plain("\", \"id\": 7}");
            } else {
                // Dictionary names (the evaluation configures the dictionary).
                let v = pick(r, DICTIONARY);
                b.plain("Seen by ").value(entity, v).plain(" today.");
            }
        }
        _ => unreachable!(),
    }
    let post = {
        let k = r.gen_range(0..6);
        filler(r, k)
    };
    if !post.is_empty() {
        b.plain(" ").plain(&post);
    }
    b.done()
}

/// Names the evaluation puts in the workspace dictionary.
pub const DICTIONARY: &[&str] = &[
    "Jane Roe",
    "Johan Eriksson",
    "Amara Nwosu",
    "Dr. Lena Park",
    "Tomasz Zielinski",
];

pub const ENTITIES: &[&str] = &[
    "EMAIL", "PHONE", "SSN", "CARD", "IBAN", "IP", "DOB", "MRN", "SECRET", "NAME",
];

/// One line of clean text: code, logs or prose full of numbers, with no PII.
pub fn clean_line(r: &mut StdRng) -> String {
    let n = |r: &mut StdRng, k: usize| digits(r, k);
    match r.gen_range(0..31) {
        0 => format!(
            "2024-{:02}-{:02}T{:02}:{:02}:{:02}.{}Z INFO request_id={} status=200 latency_ms={}",
            r.gen_range(1..13),
            r.gen_range(1..29),
            r.gen_range(0..24),
            r.gen_range(0..60),
            r.gen_range(0..60),
            n(r, 3),
            uuid(r),
            r.gen_range(1..900)
        ),
        1 => format!(
            "let total: u64 = values.iter().map(|x| x * {}).sum::<u64>() + {};",
            r.gen_range(2..1000),
            n(r, 6)
        ),
        2 => format!(
            "In {} revenue grew {}.{}% to ${},{:03},{:03} across {} regions.",
            r.gen_range(1990..2030),
            r.gen_range(1..60),
            r.gen_range(0..10),
            r.gen_range(1..999),
            r.gen_range(0..1000),
            r.gen_range(0..1000),
            r.gen_range(2..40)
        ),
        3 => format!(
            "ts={} seq={} offset={} partition={}",
            n(r, 13),
            n(r, 10),
            n(r, 12),
            r.gen_range(0..64)
        ),
        4 => format!(
            "listening on 0.0.0.0:{} and 127.0.0.1:{}",
            r.gen_range(1024..65535),
            r.gen_range(1024..65535)
        ),
        5 => format!(
            "commit {} (tag v{}.{}.{}) built in {}.{}s",
            hex(r, 40),
            r.gen_range(0..20),
            r.gen_range(0..40),
            r.gen_range(0..100),
            r.gen_range(0..300),
            r.gen_range(0..10)
        ),
        6 => format!(
            "at src/main.rs:{}:{} in fn handle() -> Result<(), Error> {{ std::fmt::Display::fmt(&x, f) }}",
            r.gen_range(1..3000),
            r.gen_range(1..120)
        ),
        7 => format!(
            "order #{} shipped {} items, tracking {}",
            n(r, 16),
            r.gen_range(1..20),
            n(r, 12)
        ),
        8 => format!(
            "The meeting moved to {}:{:02} on {}/{}; room {} fits {} people.",
            r.gen_range(1..13),
            r.gen_range(0..60),
            r.gen_range(1..13),
            r.gen_range(1..29),
            r.gen_range(100..999),
            r.gen_range(2..40)
        ),
        9 => format!(
            "version {}.{}.{}.{} released {}-{:02}-{:02}",
            r.gen_range(0..10),
            r.gen_range(0..30),
            r.gen_range(0..100),
            r.gen_range(0..1000),
            r.gen_range(2000..2030),
            r.gen_range(1..13),
            r.gen_range(1..29)
        ),
        10 => format!(
            "matrix = [[{}, {}, {}], [{}, {}, {}]]  # shape (2, 3)",
            r.gen_range(0..999),
            r.gen_range(0..999),
            r.gen_range(0..999),
            r.gen_range(0..999),
            r.gen_range(0..999),
            r.gen_range(0..999)
        ),
        11 => format!("sha256:{} size={} bytes", hex(r, 64), n(r, 9)),
        12 => format!(
            "ISBN 978-{}-{}-{}-{} priced at {}.{:02} EUR",
            r.gen_range(0..10),
            n(r, 2),
            n(r, 6),
            r.gen_range(0..10),
            r.gen_range(1..100),
            r.gen_range(0..100)
        ),
        13 => format!(
            "coordinates {}.{}, -{}.{} elevation {} m",
            r.gen_range(-80..80),
            n(r, 4),
            r.gen_range(0..170),
            n(r, 4),
            r.gen_range(0..4000)
        ),
        14 => format!(
            "pid {} used {} KiB; addr 0x{} flags 0o{}",
            r.gen_range(1..99999),
            n(r, 7),
            hex(r, 12),
            r.gen_range(100..777)
        ),
        15 => format!(
            "for i in range({}): total += i ** {} % {}",
            r.gen_range(1..10000),
            r.gen_range(2..5),
            r.gen_range(2..1000)
        ),
        16 => format!(
            "The token budget is {} tokens; max_tokens: {} and temperature {}.{}",
            r.gen_range(100..200000),
            r.gen_range(1..8192),
            r.gen_range(0..2),
            r.gen_range(0..10)
        ),
        17 => format!(
            "user_id={} account_id={} session={}",
            n(r, 10),
            n(r, 12),
            hex(r, 32)
        ),
        18 => format!(
            "Call the function with --retries {} --timeout {}s --port {}",
            r.gen_range(1..10),
            r.gen_range(1..600),
            r.gen_range(1024..65535)
        ),
        19 => format!(
            "Figure {}.{} shows {}x{} tiles at {} dpi; see p. {}-{}",
            r.gen_range(1..20),
            r.gen_range(1..20),
            r.gen_range(1..512),
            r.gen_range(1..512),
            r.gen_range(72..600),
            r.gen_range(1..400),
            r.gen_range(400..800)
        ),
        20 => format!(
            "const TIMEOUT_MS: u32 = {}; // {} retries, backoff {}",
            n(r, 5),
            r.gen_range(1..9),
            r.gen_range(1..99)
        ),
        21 => format!("uuid {} trace {} span {}", uuid(r), hex(r, 32), hex(r, 16)),
        22 => format!(
            "Scores: {} {} {} {} {} — median {}",
            r.gen_range(0..100),
            r.gen_range(0..100),
            r.gen_range(0..100),
            r.gen_range(0..100),
            r.gen_range(0..100),
            r.gen_range(0..100)
        ),
        23 => format!(
            "iface eth0 mac {}:{}:{}:{}:{}:{} mtu {} rx {} tx {}",
            hex(r, 2),
            hex(r, 2),
            hex(r, 2),
            hex(r, 2),
            hex(r, 2),
            hex(r, 2),
            r.gen_range(576..9001),
            n(r, 9),
            n(r, 10)
        ),
        24 => format!(
            "curl -H 'Authorization: Bearer <token>' -H 'x-api-key: $API_KEY' https://api.example.com/v{}/items?page={}",
            r.gen_range(1..4),
            r.gen_range(1..50)
        ),
        25 => format!(
            "password: ******** (last changed {} days ago); token = get_token(); secret_name = \"db-{}\"",
            r.gen_range(1..400),
            r.gen_range(1..9)
        ),
        26 => format!(
            "TZ offset +{:02}:{:02}, delta +{}.{}%, processed {} rows in {} ms",
            r.gen_range(0..14),
            r.gen_range(0..4) * 15,
            r.gen_range(0..99),
            r.gen_range(0..9),
            n(r, 10),
            r.gen_range(1..99999)
        ),
        27 => format!(
            "population {} ({} households), area {} km², founded {}",
            n(r, 9),
            n(r, 7),
            r.gen_range(10..9999),
            r.gen_range(1200..2000)
        ),
        28 => format!(
            "git log --since={}-{:02}-{:02} | wc -l  # {} commits by {} authors, PR #{}",
            r.gen_range(2015..2026),
            r.gen_range(1..13),
            r.gen_range(1..29),
            r.gen_range(1..9999),
            r.gen_range(1..99),
            r.gen_range(1..99999)
        ),
        29 => format!(
            "base64 payload {} (len {})",
            alnum(r, 48, B62),
            r.gen_range(32..4096)
        ),
        _ => format!(
            "{} {} {} {}",
            filler(r, 4),
            r.gen_range(0..100000),
            filler(r, 3),
            n(r, 8)
        ),
    }
}

fn hex(r: &mut StdRng, n: usize) -> String {
    alnum(r, n, b"0123456789abcdef")
}

fn uuid(r: &mut StdRng) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        hex(r, 8),
        hex(r, 4),
        hex(r, 4),
        hex(r, 4),
        hex(r, 12)
    )
}
