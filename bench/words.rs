//! The sensitive-word check with a real-sized list: 10,000 words (generated, deterministic), one
//! Aho-Corasick automaton, texts folded first (NFKC, case, letters and digits only).
//!
//!   cargo bench --bench words -- [--words N] [--texts N] [--chars N]
//!
//! Reports the time to build the automaton and the throughput of `find` over typical texts
//! (a short chat message, a board post, a long submission), with and without a hit.

use std::time::Instant;

use dangjian::platform::content::SensitiveWords;

struct Args {
    words: usize,
    texts: usize,
    chars: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        words: 10_000,
        texts: 20_000,
        chars: 1_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match flag.as_str() {
            "--words" => a.words = num(),
            "--texts" => a.texts = num(),
            "--chars" => a.chars = num(),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A CJK character from the common block.
    fn han(&mut self) -> char {
        char::from_u32(0x4E00 + (self.next() % 0x5000) as u32).unwrap()
    }
}

fn word_list(n: usize, rng: &mut Rng) -> String {
    let mut out = String::from("# generated for the benchmark\n");
    for i in 0..n {
        let len = 2 + (rng.next() % 4) as usize;
        let word: String = if i % 5 == 0 {
            // Some Latin words too (folded case-insensitively).
            (0..len + 3)
                .map(|_| (b'a' + (rng.next() % 26) as u8) as char)
                .collect()
        } else {
            (0..len).map(|_| rng.han()).collect()
        };
        out.push_str(&word);
        out.push('\n');
    }
    out
}

fn text(chars: usize, rng: &mut Rng) -> String {
    (0..chars)
        .map(|i| match i % 17 {
            0 => '，',
            7 => ' ',
            _ => rng.han(),
        })
        .collect()
}

fn main() {
    let a = parse_args();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let list = word_list(a.words, &mut rng);
    let started = Instant::now();
    let words = SensitiveWords::parse(&list);
    let build = started.elapsed();
    println!(
        "word list: {} words (after folding and de-duplication), automaton built in {:.1} ms",
        words.len(),
        build.as_secs_f64() * 1000.0
    );
    // A word from the list, evasively written, to make sure the hit path is measured too.
    let listed = list.lines().nth(2).unwrap().to_owned();
    let evasive: String = listed.chars().flat_map(|c| [c, '\u{200B}', '.']).collect();
    for (label, chars) in [
        ("chat message", 40),
        ("board post", 300),
        ("submission", a.chars),
    ] {
        let texts: Vec<String> = (0..a.texts.min(5_000))
            .map(|_| text(chars, &mut rng))
            .collect();
        let mut hits = 0usize;
        let started = Instant::now();
        for i in 0..a.texts {
            let t = &texts[i % texts.len()];
            if words.find(t).is_some() {
                hits += 1;
            }
        }
        let clean = started.elapsed();
        let with_hit: Vec<String> = texts
            .iter()
            .take(1_000)
            .map(|t| format!("{t}{evasive}"))
            .collect();
        let started = Instant::now();
        for i in 0..a.texts {
            assert!(words.find(&with_hit[i % with_hit.len()]).is_some());
        }
        let hit = started.elapsed();
        let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / a.texts as f64;
        println!(
            "{label:>13} ({chars:>5} chars): {:>7.2} µs/text without a listed word ({hits} chance hits), \
             {:>7.2} µs/text with an evasive hit",
            per(clean),
            per(hit)
        );
    }
}
