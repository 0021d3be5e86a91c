//! trec_eval 10.0, measure for measure: every measure of its `all_trec` set
//! (plus `dcg` and `ideal_dcg`), its `-m name.params` syntax, the options
//! `-c -M -l -J -N`, and its output format.
//!
//! Each measure performs the same floating-point operations in the same order
//! as trec_eval's C code, so the printed values agree to the last digit. The
//! rules every measure shares (trec_eval's `form_res_rels.c`):
//!
//! * A query's documents are sorted by score, highest first, comparing with
//!   C's `<` and `>` (so -0 ties +0), ties broken by document id in
//!   descending byte order (`strcmp(b, a)`); a run's rank column is ignored.
//!   trec_eval 10.0 keeps scores as doubles ([`Scores::Double`]); 9.x and
//!   pytrec_eval round them to C floats first ([`Scores::Float`]).
//! * `-M N` keeps the first N documents; `-J` then drops unjudged ones.
//! * Each retrieved document gets its judgement: the qrels value when that
//!   is 0 or more, -2 (in the pool but unjudged) when negative, -1 (not in
//!   the pool) when the qrels do not list it. It is relevant when its
//!   judgement is at least the relevance level (`-l`, 1).
//! * `num_rel` counts the query's judgements of at least that level,
//!   retrieved or not;
//!   the gain measures (ndcg, G, rbp, ...) use the judgement itself as gain
//!   unless `name.level=gain` parameters say otherwise.
//! * Queries: those of the qrels that the run has results for, in byte order
//!   of their ids; with `-c`, every query of the qrels, a missing one scored
//!   as trec_eval scores it (a ranking of one document outside the pool,
//!   then the values named `num_ret`, `utility`, `rbp_resid` and `unj_*`
//!   reset to zero and `relstring` emptied). The
//!   summary (`all`) is the mean over those queries, except that `num_ret`,
//!   `num_rel`, `num_rel_ret` and `num_nonrel_judged_ret` are sums and
//!   `gm_map` and `gm_bpref` geometric means.
//!
//! Where trec_eval reads uninitialised memory (`rbp`'s gain range, a query
//! whose judgements are all negative), this module uses the evident intent:
//! the gains' true minimum and maximum, and no relevance levels.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

pub use reasonembed_data::trec::{Qrels, Run};

/// How scores are compared when a query's documents are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scores {
    /// As C doubles: trec_eval 10.0.
    #[default]
    Double,
    /// Rounded to C floats first: trec_eval up to 9.0.8, and pytrec_eval.
    Float,
}

/// trec_eval's command-line options that change the numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `-l`: the smallest judgement that counts as relevant.
    pub relevance_level: i64,
    /// `-M`: documents kept per query (the best ones).
    pub max_retrieved: Option<usize>,
    /// `-c`: average over every query of the qrels.
    pub complete: bool,
    /// `-J`: drop unjudged documents from the ranking.
    pub judged_only: bool,
    /// `-N`: number of documents in the collection (utility's fourth term).
    pub num_docs_in_coll: i64,
    /// Double (trec_eval 10.0) or float (pytrec_eval) score comparison.
    pub scores: Scores,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            relevance_level: 1,
            max_retrieved: None,
            complete: false,
            judged_only: false,
            num_docs_in_coll: 0,
            scores: Scores::Double,
        }
    }
}

const MIN_GEO_MEAN: f64 = 0.00001;
const INFAP_EPSILON: f64 = 0.00001;
const NONPOOL: i64 = -1;
const UNJUDGED: i64 = -2;
/// The document trec_eval ranks for a query missing from the run under `-c`.
const MISSING_QUERY_DOC: &str = "ceci_nest_pas_un_docno";
/// Judgements above this are refused (trec_eval allocates one counter per level).
const MAX_RELEVANCE: i64 = 1 << 24;

/// trec_eval's measures, in its print order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Runid,
    NumQ,
    NumRet,
    NumRel,
    NumRelRet,
    Map,
    GmMap,
    Rprec,
    Bpref,
    RecipRank,
    IprecAtRecall,
    P,
    Relstring,
    Recall,
    InfAp,
    GmBpref,
    RprecMult,
    Utility,
    Pt11Avg,
    BinG,
    G,
    Dcg,
    IdealDcg,
    Ndcg,
    NdcgRel,
    Rndcg,
    NdcgCut,
    MapCut,
    RelativeP,
    Success,
    SetP,
    SetRelativeP,
    SetRecall,
    SetMap,
    SetF,
    NumNonrelJudgedRet,
    Rbp,
    RbpResid,
    Unj,
}

/// How a measure takes parameters, with its defaults.
#[derive(Debug, Clone, Copy)]
enum Takes {
    Nothing,
    /// Document cut-offs (`P.5,10`): integers > 0, sorted, one value each.
    Cutoffs(&'static [i64]),
    /// Fractions (`iprec_at_recall.0.1,0.5`): sorted, one value each.
    Fractions(&'static [f64]),
    /// Numbers kept in order (`utility.1,-1,0,0`), one value.
    Numbers(&'static [f64]),
    /// `level=gain` pairs (`ndcg.1=3,2=9`; `rbp.p=0.8`), one value.
    Gains,
}

const CUTOFFS: &[i64] = &[5, 10, 15, 20, 30, 100, 200, 500, 1000];
const RECALL_POINTS: &[f64] = &[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// Every measure: name, kind, parameters (trec_eval's `measures.c` order).
const MEASURES: &[(&str, Kind, Takes)] = &[
    ("runid", Kind::Runid, Takes::Nothing),
    ("num_q", Kind::NumQ, Takes::Nothing),
    ("num_ret", Kind::NumRet, Takes::Nothing),
    ("num_rel", Kind::NumRel, Takes::Nothing),
    ("num_rel_ret", Kind::NumRelRet, Takes::Nothing),
    ("map", Kind::Map, Takes::Nothing),
    ("gm_map", Kind::GmMap, Takes::Nothing),
    ("Rprec", Kind::Rprec, Takes::Nothing),
    ("bpref", Kind::Bpref, Takes::Nothing),
    ("recip_rank", Kind::RecipRank, Takes::Nothing),
    ("iprec_at_recall", Kind::IprecAtRecall, Takes::Fractions(RECALL_POINTS)),
    ("P", Kind::P, Takes::Cutoffs(CUTOFFS)),
    ("relstring", Kind::Relstring, Takes::Numbers(&[10.0])),
    ("recall", Kind::Recall, Takes::Cutoffs(CUTOFFS)),
    ("infAP", Kind::InfAp, Takes::Nothing),
    ("gm_bpref", Kind::GmBpref, Takes::Nothing),
    (
        "Rprec_mult",
        Kind::RprecMult,
        Takes::Fractions(&[0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0]),
    ),
    ("utility", Kind::Utility, Takes::Numbers(&[1.0, -1.0, 0.0, 0.0])),
    ("11pt_avg", Kind::Pt11Avg, Takes::Numbers(RECALL_POINTS)),
    ("binG", Kind::BinG, Takes::Nothing),
    ("G", Kind::G, Takes::Gains),
    ("dcg", Kind::Dcg, Takes::Gains),
    ("ideal_dcg", Kind::IdealDcg, Takes::Gains),
    ("ndcg", Kind::Ndcg, Takes::Gains),
    ("ndcg_rel", Kind::NdcgRel, Takes::Gains),
    ("Rndcg", Kind::Rndcg, Takes::Gains),
    ("ndcg_cut", Kind::NdcgCut, Takes::Cutoffs(CUTOFFS)),
    ("map_cut", Kind::MapCut, Takes::Cutoffs(CUTOFFS)),
    ("relative_P", Kind::RelativeP, Takes::Cutoffs(CUTOFFS)),
    ("success", Kind::Success, Takes::Cutoffs(&[1, 5, 10])),
    ("set_P", Kind::SetP, Takes::Nothing),
    ("set_relative_P", Kind::SetRelativeP, Takes::Nothing),
    ("set_recall", Kind::SetRecall, Takes::Nothing),
    ("set_map", Kind::SetMap, Takes::Nothing),
    ("set_F", Kind::SetF, Takes::Numbers(&[1.0])),
    ("num_nonrel_judged_ret", Kind::NumNonrelJudgedRet, Takes::Nothing),
    ("rbp", Kind::Rbp, Takes::Gains),
    ("rbp_resid", Kind::RbpResid, Takes::Gains),
    ("unj", Kind::Unj, Takes::Cutoffs(&[5, 10, 20])),
];

const OFFICIAL: &[&str] = &[
    "runid",
    "num_q",
    "num_ret",
    "num_rel",
    "num_rel_ret",
    "map",
    "gm_map",
    "Rprec",
    "bpref",
    "recip_rank",
    "iprec_at_recall",
    "P",
];

const ALL_TREC: &[&str] = &[
    "runid",
    "num_q",
    "num_ret",
    "num_rel",
    "num_rel_ret",
    "map",
    "gm_map",
    "Rprec",
    "bpref",
    "recip_rank",
    "iprec_at_recall",
    "P",
    "relstring",
    "recall",
    "unj",
    "rbp",
    "rbp_resid",
    "infAP",
    "gm_bpref",
    "utility",
    "11pt_avg",
    "ndcg",
    "relative_P",
    "Rprec_mult",
    "success",
    "map_cut",
    "ndcg_cut",
    "ndcg_rel",
    "Rndcg",
    "binG",
    "G",
    "set_P",
    "set_recall",
    "set_relative_P",
    "set_map",
    "set_F",
    "num_nonrel_judged_ret",
];

const SET: &[&str] = &[
    "runid",
    "num_q",
    "num_ret",
    "num_rel",
    "num_rel_ret",
    "utility",
    "set_P",
    "set_recall",
    "set_relative_P",
    "set_map",
    "set_F",
];

/// trec_eval measures and nicknames this module does not compute: they need
/// the preference or judgement-group qrels formats.
const NOT_IMPLEMENTED: &[&str] = &[
    "all_prefs",
    "prefs",
    "qrels_jg",
    "map_avgjg",
    "P_avgjg",
    "Rprec_mult_avgjg",
    "yaap",
    "prefs_num_prefs_poss",
    "prefs_num_prefs_ful",
    "prefs_num_prefs_ful_ret",
    "prefs_simp",
    "prefs_pair",
    "prefs_avgjg",
    "prefs_avgjg_Rnonrel",
    "prefs_simp_ret",
    "prefs_pair_ret",
    "prefs_avgjg_ret",
    "prefs_avgjg_Rnonrel_ret",
    "prefs_simp_imp",
    "prefs_pair_imp",
    "prefs_avgjg_imp",
];

/// The names `-m` accepts: each measure, and the nicknames `official`,
/// `all_trec` and `set`.
pub fn measure_names() -> impl Iterator<Item = &'static str> {
    MEASURES
        .iter()
        .map(|(name, ..)| *name)
        .chain(["official", "all_trec", "set"])
}

#[derive(Debug, Clone, PartialEq)]
enum Params {
    None,
    Cutoffs(Vec<i64>),
    Numbers(Vec<f64>),
    Gains(Vec<(String, f64)>),
}

/// One requested measure with its parameters and the names of its values.
#[derive(Debug, Clone, PartialEq)]
struct Measure {
    kind: Kind,
    params: Params,
    /// One per value: `P_5`, `iprec_at_recall_0.10`, `utility_2,-1,0,0`, ...
    names: Vec<String>,
}

/// A set of measures as trec_eval's `-m` options select them.
#[derive(Debug, Clone, PartialEq)]
pub struct Measures {
    list: Vec<Measure>,
}

impl Measures {
    /// trec_eval's default (`-m official`).
    pub fn official() -> Self {
        Self::parse(&["official"]).expect("the official measures parse")
    }

    /// The measures `-m` options ask for, as trec_eval reads them: a measure
    /// (`map`), a nickname (`official`, `all_trec`, `set`), or a measure with
    /// parameters after its first dot (`P.5,10`, `iprec_at_recall..1,.5`,
    /// `ndcg.1=3,2=9`, `utility.2,-1,0,0`). When a measure is given
    /// parameters twice the first ones count, as in trec_eval; numbers are
    /// read as C's `atol`/`atof` read them (`ndcg_cut.23.4` is `ndcg_cut_23`).
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, String> {
        let mut marked: Vec<Kind> = Vec::new();
        let mut given: Vec<(&str, &str)> = Vec::new();
        for spec in specs {
            let spec = spec.as_ref();
            let (name, params) = match spec.split_once('.') {
                Some((name, params)) => (name, Some(params)),
                None => (spec, None),
            };
            if let Some(params) = params {
                if params.is_empty() {
                    return Err(format!("measure '{spec}': nothing after the '.'"));
                }
                given.push((name, params));
            }
            let names: &[&str] = match name {
                "official" => OFFICIAL,
                "all_trec" => ALL_TREC,
                "set" => SET,
                _ => std::slice::from_ref(&name),
            };
            for name in names {
                marked.push(kind_of(name).map_err(|e| format!("measure '{spec}': {e}"))?);
            }
        }
        let mut list = Vec::new();
        for &(name, kind, takes) in MEASURES {
            if !marked.contains(&kind) {
                continue;
            }
            let text = given.iter().find(|(n, _)| *n == name).map(|(_, p)| *p);
            let params = parse_params(name, takes, text).map_err(|e| format!("measure '{name}': {e}"))?;
            let names = value_names(name, takes, &params, text);
            list.push(Measure { kind, params, names });
        }
        Ok(Self { list })
    }

    /// The names of the values these measures produce, in print order.
    pub fn value_names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().flat_map(|m| m.names.iter().map(String::as_str))
    }

    fn num_values(&self) -> usize {
        self.list.iter().map(|m| m.names.len()).sum()
    }
}

fn kind_of(name: &str) -> Result<Kind, String> {
    if let Some(&(_, kind, _)) = MEASURES.iter().find(|(n, ..)| *n == name) {
        return Ok(kind);
    }
    if NOT_IMPLEMENTED.contains(&name) {
        return Err(format!(
            "'{name}' is a trec_eval measure that reasonembed does not implement (it needs \
             trec_eval's prefs or qrels_jg formats)"
        ));
    }
    let hint = name
        .rsplit_once('_')
        .filter(|(base, k)| k.parse::<f64>().is_ok() && MEASURES.iter().any(|(n, ..)| n == base))
        .map(|(base, k)| format!(" (did you mean '{base}.{k}'?)"))
        .unwrap_or_default();
    Err(format!(
        "unknown measure '{name}'{hint}; measures: {}",
        measure_names().collect::<Vec<_>>().join(", ")
    ))
}

fn parse_params(name: &str, takes: Takes, text: Option<&str>) -> Result<Params, String> {
    let Some(text) = text else {
        return Ok(match takes {
            Takes::Nothing => Params::None,
            Takes::Cutoffs(d) => Params::Cutoffs(d.to_vec()),
            Takes::Fractions(d) | Takes::Numbers(d) => Params::Numbers(d.to_vec()),
            Takes::Gains => Params::Gains(Vec::new()),
        });
    };
    let params = match takes {
        Takes::Nothing => return Err(format!("{name} takes no parameters, got '{text}'")),
        Takes::Cutoffs(_) => {
            let mut cutoffs: Vec<i64> = text.split(',').map(c_atol).collect();
            cutoffs.sort_unstable();
            if cutoffs[0] <= 0 {
                return Err(format!("cut-offs must be positive integers, got '{text}'"));
            }
            if cutoffs.windows(2).any(|w| w[0] == w[1]) {
                return Err(format!("duplicate cut-offs in '{text}'"));
            }
            Params::Cutoffs(cutoffs)
        }
        Takes::Fractions(_) => {
            let mut values: Vec<f64> = text.split(',').map(c_atof).collect();
            values.sort_by(f64::total_cmp);
            if values.windows(2).any(|w| w[0] == w[1]) {
                return Err(format!("duplicate cut-offs in '{text}'"));
            }
            Params::Numbers(values)
        }
        Takes::Numbers(_) => {
            let values: Vec<f64> = text.split(',').map(c_atof).collect();
            if name == "utility" && values.len() != 4 {
                return Err(format!("utility takes 4 coefficients, got '{text}'"));
            }
            Params::Numbers(values)
        }
        Takes::Gains => {
            let pairs: Option<Vec<(String, f64)>> = text
                .split(',')
                .map(|pair| {
                    let (level, gain) = pair.split_once('=')?;
                    (!gain.contains('=')).then(|| (level.to_string(), c_atof(gain)))
                })
                .collect();
            Params::Gains(pairs.ok_or(format!("parameters must be level=gain pairs, got '{text}'"))?)
        }
    };
    Ok(params)
}

fn value_names(name: &str, takes: Takes, params: &Params, text: Option<&str>) -> Vec<String> {
    match (takes, params) {
        (Takes::Cutoffs(_), Params::Cutoffs(cutoffs)) => cutoffs.iter().map(|k| format!("{name}_{k}")).collect(),
        (Takes::Fractions(_), Params::Numbers(values)) => values.iter().map(|v| format!("{name}_{:3.2}", v)).collect(),
        _ => vec![match text {
            Some(text) => format!("{name}_{text}"),
            None => name.to_string(),
        }],
    }
}

/// C's `atol`: leading blanks, a sign, then as many digits as there are.
fn c_atol(text: &str) -> i64 {
    let t = text.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut value: i64 = 0;
    for d in digits.bytes().take_while(u8::is_ascii_digit) {
        value = value.saturating_mul(10).saturating_add(i64::from(d - b'0'));
    }
    if negative { -value } else { value }
}

/// C's `atof` on decimal text: the longest prefix that is a number, else 0.
fn c_atof(text: &str) -> f64 {
    let t = text.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
    let b = t.as_bytes();
    let mut end = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    let int_digits = b[end..].iter().take_while(|c| c.is_ascii_digit()).count();
    end += int_digits;
    let mut frac_digits = 0;
    if b.get(end) == Some(&b'.') {
        frac_digits = b[end + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if int_digits + frac_digits > 0 {
            end += 1 + frac_digits;
        }
    }
    if int_digits + frac_digits == 0 {
        return 0.0;
    }
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let mut e = end + 1;
        if matches!(b.get(e), Some(b'+' | b'-')) {
            e += 1;
        }
        let exp_digits = b[e..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp_digits > 0 {
            end = e + exp_digits;
        }
    }
    t[..end].parse().unwrap_or(0.0)
}

/// A query's ranking turned into judgements, with trec_eval's counts.
struct Judged {
    /// The judgement of the document at each rank (see the module docs).
    rels: Vec<i64>,
    num_rel: i64,
    num_rel_ret: i64,
    num_nonpool: i64,
    num_unjudged: i64,
    /// `rel_levels[r]`: the query's judgements equal to `r`.
    rel_levels: Vec<i64>,
    /// One more than the highest level judged at least once (0 if none).
    num_rel_levels: usize,
    level: i64,
}

impl Judged {
    fn new(
        qid: &str,
        docs: &[(String, f64)],
        judged: &BTreeMap<String, i64>,
        options: &Options,
    ) -> Result<Self, String> {
        let mut seen = HashSet::with_capacity(docs.len());
        if let Some((doc, _)) = docs.iter().find(|(d, _)| !seen.insert(d.as_str())) {
            return Err(format!("query {qid}: document {doc} is retrieved twice"));
        }
        let ranked = rank_by_score(docs, options.scores);
        let kept = options.max_retrieved.map_or(ranked.len(), |m| m.min(ranked.len()));
        let level = options.relevance_level;
        let mut rels: Vec<i64> = ranked[..kept]
            .iter()
            .map(|(doc, _)| match judged.get(doc.as_str()) {
                None => NONPOOL,
                Some(&r) if r < 0 => UNJUDGED,
                Some(&r) => r,
            })
            .collect();
        if options.judged_only {
            rels.retain(|&r| r >= 0);
        }
        let max_rel = judged.values().copied().max().unwrap_or(-1);
        if max_rel > MAX_RELEVANCE {
            return Err(format!(
                "query {qid}: relevance {max_rel} is larger than {MAX_RELEVANCE}"
            ));
        }
        let mut rel_levels = vec![0i64; usize::try_from(max_rel + 1).unwrap_or(0)];
        for &r in judged.values().filter(|&&r| r >= 0) {
            rel_levels[r as usize] += 1;
        }
        let num_rel_levels = rel_levels.iter().rposition(|&n| n > 0).map_or(0, |i| i + 1);
        let num_rel = (0..rel_levels.len())
            .filter(|&i| i as i64 >= level)
            .map(|i| rel_levels[i])
            .sum();
        Ok(Self {
            num_rel_ret: rels.iter().filter(|&&r| r >= 0 && r >= level).count() as i64,
            num_nonpool: rels.iter().filter(|&&r| r == NONPOOL).count() as i64,
            num_unjudged: rels.iter().filter(|&&r| r == UNJUDGED).count() as i64,
            rels,
            num_rel,
            rel_levels,
            num_rel_levels,
            level,
        })
    }

    fn num_ret(&self) -> i64 {
        self.rels.len() as i64
    }

    fn relevant(&self, r: i64) -> bool {
        r >= self.level
    }

    /// Relevant documents among the first `k` (or all, if fewer).
    fn relevant_in_top(&self, k: i64) -> i64 {
        self.top(k).iter().filter(|&&r| self.relevant(r)).count() as i64
    }

    fn top(&self, k: i64) -> &[i64] {
        &self.rels[..usize::try_from(k).unwrap_or(0).min(self.rels.len())]
    }

    /// Sum of the precision at each relevant document among the first `k`.
    fn precision_sum(&self, k: i64) -> f64 {
        let mut found = 0i64;
        let mut sum = 0.0;
        for (i, &r) in self.top(k).iter().enumerate() {
            if self.relevant(r) {
                found += 1;
                sum += found as f64 / (i + 1) as f64;
            }
        }
        sum
    }

    /// bpref's sum over relevant documents, before dividing by `num_rel`.
    fn bpref(&self) -> f64 {
        let num_nonrel: i64 = self
            .rel_levels
            .iter()
            .take(usize::try_from(self.level).unwrap_or(0))
            .sum();
        let mut nonrel_so_far = 0i64;
        let mut bpref = 0.0;
        for &r in &self.rels {
            if r == NONPOOL || r == UNJUDGED {
                continue;
            }
            if r >= 0 && r < self.level {
                nonrel_so_far += 1;
            } else if nonrel_so_far > 0 {
                bpref += 1.0 - (nonrel_so_far.min(self.num_rel) as f64 / num_nonrel.min(self.num_rel) as f64);
            } else {
                bpref += 1.0;
            }
        }
        if self.num_rel > 0 {
            bpref /= self.num_rel as f64;
        }
        bpref
    }
}

/// Sorts documents as trec_eval does: score descending, then id descending.
fn rank_by_score(docs: &[(String, f64)], scores: Scores) -> Vec<&(String, f64)> {
    // Adding 0.0 folds -0 into +0, so that `total_cmp` orders like C's `<`.
    let key = |s: f64| match scores {
        Scores::Double => s + 0.0,
        Scores::Float => f64::from(s as f32) + 0.0,
    };
    let mut ranked: Vec<&(String, f64)> = docs.iter().collect();
    ranked.sort_by(|a, b| {
        key(b.1)
            .total_cmp(&key(a.1))
            .then_with(|| b.0.as_bytes().cmp(a.0.as_bytes()))
    });
    ranked
}

/// The ranking of the documents the run has for a query (sorted by score,
/// ties by id descending), as trec_eval evaluates it.
pub fn rank(qid: &str, docs: &[(String, f64)], scores: Scores) -> Result<Vec<(String, f64)>, String> {
    let mut seen = HashSet::with_capacity(docs.len());
    if let Some((doc, _)) = docs.iter().find(|(d, _)| !seen.insert(d.as_str())) {
        return Err(format!("query {qid}: document {doc} is retrieved twice"));
    }
    Ok(rank_by_score(docs, scores).into_iter().cloned().collect())
}

/// A relevance level's gain and how many of the query's judgements have it.
#[derive(Debug, Clone, Copy)]
struct Gain {
    level: i64,
    gain: f64,
    count: i64,
}

/// trec_eval's `setup_gains`: the `level=gain` parameters (those whose level
/// is an integer), then every level up to the highest judged one with the
/// level as gain, sorted by gain as glibc's merge sort sorts them with
/// trec_eval's comparator (which truncates the difference of two gains to
/// an int, so gains less than 1 apart keep their order).
fn gains(pairs: &[(String, f64)], j: &Judged) -> Vec<Gain> {
    let mut gains: Vec<Gain> = pairs
        .iter()
        .filter(|(level, _)| is_c_integer(level))
        .map(|(level, gain)| Gain {
            level: c_atol(level),
            gain: *gain,
            count: 0,
        })
        .collect();
    for level in 0..j.num_rel_levels {
        let count = j.rel_levels[level];
        match gains.iter_mut().find(|g| g.level == level as i64) {
            Some(g) => g.count = count,
            None => gains.push(Gain {
                level: level as i64,
                gain: level as f64,
                count,
            }),
        }
    }
    glibc_merge_sort(&mut gains, &|a: &Gain, b: &Gain| (a.gain - b.gain) as i32);
    gains
}

fn is_c_integer(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn gain_of(rel: i64, gains: &[Gain]) -> f64 {
    gains.iter().find(|g| g.level == rel).map_or(0.0, |g| g.gain)
}

/// glibc's `qsort` for small arrays (`msort.c`): top-down merge sort, the
/// first half taking ties; it matters only for inconsistent comparators.
fn glibc_merge_sort<T: Copy>(items: &mut [T], cmp: &dyn Fn(&T, &T) -> i32) {
    let n = items.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    glibc_merge_sort(&mut items[..n1], cmp);
    glibc_merge_sort(&mut items[n1..], cmp);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut k) = (0, n1);
    while i < n1 && k < n {
        if cmp(&items[i], &items[k]) <= 0 {
            merged.push(items[i]);
            i += 1;
        } else {
            merged.push(items[k]);
            k += 1;
        }
    }
    merged.extend_from_slice(&items[i..n1]);
    merged.extend_from_slice(&items[k..]);
    items.copy_from_slice(&merged);
}

/// Walks the ideal ranking: the gains from the highest (last) level down,
/// each repeated as often as it was judged.
struct Ideal<'a> {
    gains: &'a [Gain],
    level: isize,
    at_level: i64,
    gain: f64,
}

impl<'a> Ideal<'a> {
    fn new(gains: &'a [Gain]) -> Self {
        let level = gains.len() as isize - 1;
        Self {
            gains,
            level,
            at_level: 0,
            gain: if level >= 0 { gains[level as usize].gain } else { 0.0 },
        }
    }

    /// Moves to the next ideal document.
    fn advance(&mut self) {
        self.at_level += 1;
        while self.level >= 0 && self.at_level > self.gains[self.level as usize].count {
            self.at_level = 1;
            self.level -= 1;
            self.gain = if self.level >= 0 {
                self.gains[self.level as usize].gain
            } else {
                0.0
            };
        }
    }
}

fn discount(i: usize) -> f64 {
    ((i + 2) as f64).log2()
}

fn pairs(params: &Params) -> &[(String, f64)] {
    match params {
        Params::Gains(pairs) => pairs,
        _ => &[],
    }
}

fn numbers(params: &Params) -> &[f64] {
    match params {
        Params::Numbers(values) => values,
        _ => &[],
    }
}

fn cutoffs(params: &Params) -> &[i64] {
    match params {
        Params::Cutoffs(values) => values,
        _ => &[],
    }
}

/// rbp's persistence: the last `p=` parameter, else 0.9.
fn persistence(params: &Params) -> f64 {
    pairs(params)
        .iter()
        .filter(|(name, _)| name == "p")
        .map(|(_, p)| *p)
        .next_back()
        .unwrap_or(0.9)
}

/// Interpolated precision at each recall fraction, as `iprec_at_recall` and
/// `11pt_avg` compute it (cut-offs rounded to documents with `lround`).
fn interpolated_precision(j: &Judged, fractions: &[f64]) -> Vec<f64> {
    let cut: Vec<i64> = fractions
        .iter()
        .map(|p| (p * j.num_rel as f64).round() as i64)
        .collect();
    let mut out = vec![0.0; cut.len()];
    let mut current = cut.len() as isize - 1;
    while current >= 0 && cut[current as usize] > j.num_rel_ret {
        current -= 1;
    }
    let mut int_precis = j.num_rel_ret as f64 / j.num_ret() as f64;
    let mut rel_so_far = j.num_rel_ret;
    let mut i = j.rels.len();
    while i > 0 && rel_so_far > 0 {
        let precis = rel_so_far as f64 / i as f64;
        if int_precis < precis {
            int_precis = precis;
        }
        if j.relevant(j.rels[i - 1]) {
            while current >= 0 && rel_so_far == cut[current as usize] {
                out[current as usize] = int_precis;
                current -= 1;
            }
            rel_so_far -= 1;
        }
        i -= 1;
    }
    while current >= 0 {
        out[current as usize] = int_precis;
        current -= 1;
    }
    out
}

impl Measure {
    /// This measure's values for one query, into `out` (zeroed), and the
    /// relevance string for `relstring`.
    fn compute(&self, j: &Judged, options: &Options, out: &mut [f64], relstring: &mut Option<String>) {
        let num_ret = j.num_ret();
        let num_rel = j.num_rel as f64;
        let nrr = j.num_rel_ret;
        match self.kind {
            Kind::Runid => {}
            Kind::NumQ => out[0] = 1.0,
            Kind::NumRet => out[0] = num_ret as f64,
            Kind::NumRel => out[0] = num_rel,
            Kind::NumRelRet => out[0] = nrr as f64,
            Kind::Map => {
                if j.relevant_in_top(num_ret) > 0 {
                    out[0] = j.precision_sum(num_ret) / num_rel;
                }
            }
            Kind::GmMap => {
                let mut ap = j.precision_sum(num_ret);
                if j.relevant_in_top(num_ret) > 0 {
                    ap /= num_rel;
                }
                out[0] = ap.max(MIN_GEO_MEAN).ln();
            }
            Kind::Rprec => {
                let r = num_ret.min(j.num_rel);
                if r > 0 {
                    out[0] = j.relevant_in_top(r) as f64 / num_rel;
                }
            }
            Kind::Bpref => out[0] = j.bpref(),
            Kind::GmBpref => out[0] = j.bpref().max(MIN_GEO_MEAN).ln(),
            Kind::RecipRank => {
                if let Some(i) = j.rels.iter().position(|&r| j.relevant(r)) {
                    out[0] = 1.0 / (i + 1) as f64;
                }
            }
            Kind::IprecAtRecall => out.copy_from_slice(&interpolated_precision(j, numbers(&self.params))),
            Kind::Pt11Avg => {
                let fractions = numbers(&self.params);
                let sum = interpolated_precision(j, fractions)
                    .iter()
                    .rev()
                    .fold(0.0, |s, v| s + v);
                out[0] = sum / fractions.len() as f64;
            }
            Kind::P => {
                for (v, &k) in out.iter_mut().zip(cutoffs(&self.params)) {
                    *v = j.relevant_in_top(k) as f64 / k as f64;
                }
            }
            Kind::Recall => {
                if j.num_rel > 0 {
                    for (v, &k) in out.iter_mut().zip(cutoffs(&self.params)) {
                        *v = j.relevant_in_top(k) as f64 / num_rel;
                    }
                }
            }
            Kind::Relstring => {
                let len = (numbers(&self.params)[0] as i64).min(num_ret).max(0);
                let text = j.top(len).iter().map(|&r| match r {
                    10.. => '>',
                    0..=9 => char::from(b'0' + r as u8),
                    NONPOOL => '-',
                    UNJUDGED => '.',
                    _ => '<',
                });
                *relstring = Some(text.collect());
            }
            Kind::InfAp => out[0] = inf_ap(j),
            Kind::RprecMult => out.copy_from_slice(&rprec_mult(j, numbers(&self.params))),
            Kind::Utility => {
                let p = numbers(&self.params);
                out[0] = p[0] * nrr as f64
                    + p[1] * (num_ret - nrr) as f64
                    + p[2] * (j.num_rel - nrr) as f64
                    + p[3] * (options.num_docs_in_coll + nrr - num_ret - j.num_rel) as f64;
            }
            Kind::BinG => {
                let mut found = 0i64;
                let mut sum = 0.0;
                for (i, &r) in j.rels.iter().enumerate() {
                    if j.relevant(r) {
                        found += 1;
                        sum += 1.0 / ((3 + i as i64 - found) as f64).log2();
                    }
                }
                if found > 0 {
                    out[0] = sum / num_rel;
                }
            }
            Kind::G => out[0] = g(j, &gains(pairs(&self.params), j)),
            Kind::Dcg | Kind::IdealDcg | Kind::Ndcg => {
                let (dcg, ideal) = dcg(j, &gains(pairs(&self.params), j));
                out[0] = match self.kind {
                    Kind::Dcg => dcg,
                    Kind::IdealDcg => ideal,
                    _ if ideal > 0.0 => dcg / ideal,
                    _ => 0.0,
                };
            }
            Kind::NdcgRel => out[0] = ndcg_rel(j, &gains(pairs(&self.params), j)),
            Kind::Rndcg => {
                if j.num_rel > 0 {
                    out[0] = rndcg(j, &gains(pairs(&self.params), j));
                }
            }
            Kind::NdcgCut => {
                // The ideal ranking: each level from the highest down to 1.
                let ideal: Vec<i64> = (1..j.num_rel_levels)
                    .rev()
                    .flat_map(|l| std::iter::repeat_n(l as i64, j.rel_levels[l] as usize))
                    .collect();
                let dcg_at = |rels: &[i64], k: i64| {
                    let mut sum = 0.0;
                    for (i, &r) in rels.iter().take(usize::try_from(k).unwrap_or(0)).enumerate() {
                        if r > 0 {
                            sum += r as f64 / discount(i);
                        }
                    }
                    sum
                };
                for (v, &k) in out.iter_mut().zip(cutoffs(&self.params)) {
                    let (dcg, ideal) = (dcg_at(&j.rels, k), dcg_at(&ideal, k));
                    *v = if ideal > 0.0 { dcg / ideal } else { dcg };
                }
            }
            Kind::MapCut => {
                if j.num_rel > 0 {
                    for (v, &k) in out.iter_mut().zip(cutoffs(&self.params)) {
                        *v = j.precision_sum(k) / num_rel;
                    }
                }
            }
            Kind::RelativeP => {
                if j.num_rel > 0 {
                    for (v, &k) in out.iter_mut().zip(cutoffs(&self.params)) {
                        *v = j.relevant_in_top(k) as f64 / k.min(j.num_rel) as f64;
                    }
                }
            }
            Kind::Success => {
                for (v, &k) in out.iter_mut().zip(cutoffs(&self.params)) {
                    *v = if j.relevant_in_top(k) > 0 { 1.0 } else { 0.0 };
                }
            }
            Kind::SetP => {
                if num_ret > 0 {
                    out[0] = nrr as f64 / num_ret as f64;
                }
            }
            Kind::SetRelativeP => {
                if num_ret > 0 && j.num_rel > 0 {
                    out[0] = nrr as f64 / num_ret.min(j.num_rel) as f64;
                }
            }
            Kind::SetRecall => {
                if j.num_rel > 0 {
                    out[0] = nrr as f64 / num_rel;
                }
            }
            Kind::SetMap => {
                if num_ret > 0 && j.num_rel > 0 {
                    out[0] = (nrr as f64 * nrr as f64) / (num_ret as f64 * num_rel);
                }
            }
            Kind::SetF => {
                if nrr > 0 {
                    let p = nrr as f64 / num_ret as f64;
                    let r = nrr as f64 / num_rel;
                    let x = numbers(&self.params)[0];
                    out[0] = (x + 1.0) * p * r / (x * p + r);
                }
            }
            Kind::NumNonrelJudgedRet => out[0] = (num_ret - j.num_nonpool - j.num_unjudged - nrr) as f64,
            Kind::Rbp => out[0] = rbp(j, &self.params),
            Kind::RbpResid => {
                let p = persistence(&self.params);
                let (mut unjudged, mut sum, mut weight) = (0, 0.0, 1.0);
                for &r in &j.rels {
                    if r < 0 {
                        unjudged += 1;
                        sum += weight;
                    }
                    weight *= p;
                }
                if unjudged > 0 {
                    out[0] = weight + (1.0 - p) * sum;
                }
            }
            Kind::Unj => {
                for (v, &k) in out.iter_mut().zip(cutoffs(&self.params)) {
                    let unjudged = j.top(k).iter().filter(|&&r| r == NONPOOL || r == UNJUDGED).count();
                    *v = unjudged as f64 / k as f64;
                }
            }
        }
    }
}

fn inf_ap(j: &Judged) -> f64 {
    let (mut nonrel, mut rel, mut unjudged) = (0i64, 0i64, 0i64);
    let mut sum = 0.0;
    for (idx, &r) in j.rels.iter().enumerate() {
        if r == NONPOOL {
            continue;
        }
        if r == UNJUDGED {
            unjudged += 1;
            continue;
        }
        if r >= 0 && r < j.level {
            nonrel += 1;
            continue;
        }
        rel += 1;
        if idx == 0 {
            sum += 1.0;
        } else {
            let fj = idx as f64;
            sum += 1.0 / (fj + 1.0)
                + (fj / (fj + 1.0))
                    * ((rel - 1 + nonrel + unjudged) as f64 / fj)
                    * (((rel - 1) as f64 + INFAP_EPSILON) / ((rel - 1 + nonrel) as f64 + 2.0 * INFAP_EPSILON));
        }
    }
    if j.num_rel > 0 {
        sum /= j.num_rel as f64;
    }
    sum
}

fn rprec_mult(j: &Judged, fractions: &[f64]) -> Vec<f64> {
    let num_ret = j.num_ret();
    // trec_eval 10.0 still truncates here (`(long) (x + 0.9)`).
    let cut: Vec<i64> = fractions.iter().map(|p| (p * j.num_rel as f64 + 0.9) as i64).collect();
    let mut out = vec![0.0; cut.len()];
    let mut current = cut.len() as isize - 1;
    while current >= 0 && cut[current as usize] > num_ret {
        out[current as usize] = j.num_rel_ret as f64 / cut[current as usize] as f64;
        current -= 1;
    }
    let mut rel_so_far = j.num_rel_ret;
    let mut i = j.rels.len();
    while i > 0 && rel_so_far > 0 {
        let precis = rel_so_far as f64 / i as f64;
        while current >= 0 && i as i64 == cut[current as usize] {
            out[current as usize] = precis;
            current -= 1;
        }
        if j.relevant(j.rels[i - 1]) {
            rel_so_far -= 1;
        }
        i -= 1;
    }
    out
}

/// (dcg, ideal dcg) of `ndcg`, `dcg` and `ideal_dcg`.
fn dcg(j: &Judged, gains: &[Gain]) -> (f64, f64) {
    let (mut dcg, mut ideal_dcg) = (0.0, 0.0);
    let mut ideal = Ideal::new(gains);
    let mut i = 0;
    while i < j.rels.len() && ideal.gain > 0.0 {
        let gain = gain_of(j.rels[i], gains);
        if gain != 0.0 {
            dcg += gain / discount(i);
        }
        ideal.advance();
        if ideal.gain > 0.0 {
            ideal_dcg += ideal.gain / discount(i);
        }
        i += 1;
    }
    for (i, &r) in j.rels.iter().enumerate().skip(i) {
        let gain = gain_of(r, gains);
        if gain != 0.0 {
            dcg += gain / discount(i);
        }
    }
    let mut i = i.max(j.rels.len());
    while ideal.gain > 0.0 {
        ideal.advance();
        if ideal.gain > 0.0 {
            ideal_dcg += ideal.gain / discount(i);
        }
        i += 1;
    }
    (dcg, ideal_dcg)
}

fn g(j: &Judged, gains: &[Gain]) -> f64 {
    const MIN_COST: f64 = 1.0;
    let (mut results_g, mut sum_results, mut sum_ideal, mut sum_cost) = (0.0, 0.0, 0.0, 0.0);
    let mut ideal = Ideal::new(gains);
    let mut i = 0;
    while i < j.rels.len() && ideal.gain > 0.0 {
        let gain = gain_of(j.rels[i], gains);
        sum_results += gain;
        ideal.advance();
        if ideal.gain > 0.0 {
            sum_ideal += ideal.gain;
        }
        sum_cost += if ideal.gain >= MIN_COST { ideal.gain } else { MIN_COST };
        if gain != 0.0 {
            results_g += gain / (2.0 + sum_cost - sum_results).log2();
        }
        i += 1;
    }
    for &r in &j.rels[i.min(j.rels.len())..] {
        let gain = gain_of(r, gains);
        sum_results += gain;
        sum_cost += MIN_COST;
        if gain != 0.0 {
            results_g += gain / (2.0 + sum_cost - sum_results).log2();
        }
    }
    while ideal.gain > 0.0 {
        ideal.advance();
        if ideal.gain > 0.0 {
            sum_ideal += ideal.gain;
        }
    }
    if sum_ideal > 0.0 { results_g / sum_ideal } else { 0.0 }
}

fn ndcg_rel(j: &Judged, gains: &[Gain]) -> f64 {
    let (mut dcg, mut ideal_dcg, mut sum) = (0.0, 0.0, 0.0);
    let (mut num_rel, mut num_rel_ret) = (0i64, 0i64);
    let mut ideal = Ideal::new(gains);
    let mut i = 0;
    while i < j.rels.len() && ideal.gain > 0.0 {
        let gain = gain_of(j.rels[i], gains);
        if gain != 0.0 {
            dcg += gain / discount(i);
        }
        ideal.advance();
        if ideal.gain > 0.0 {
            num_rel += 1;
            ideal_dcg += ideal.gain / discount(i);
        }
        if gain > 0.0 {
            sum += dcg / ideal_dcg;
            num_rel_ret += 1;
        }
        i += 1;
    }
    while i < j.rels.len() {
        let gain = gain_of(j.rels[i], gains);
        if gain != 0.0 {
            dcg += gain / discount(i);
        }
        if gain > 0.0 {
            sum += dcg / ideal_dcg;
            num_rel_ret += 1;
        }
        i += 1;
    }
    while ideal.gain > 0.0 {
        ideal.advance();
        if ideal.gain > 0.0 {
            num_rel += 1;
            ideal_dcg += ideal.gain / discount(i);
        }
        i += 1;
    }
    sum += (num_rel - num_rel_ret) as f64 * dcg / ideal_dcg;
    if sum > 0.0 { sum / num_rel as f64 } else { 0.0 }
}

fn rndcg(j: &Judged, gains: &[Gain]) -> f64 {
    let (mut dcg, mut ideal_dcg, mut sum) = (0.0, 0.0, 0.0);
    let mut changes = 0i64;
    let mut ideal = Ideal::new(gains);
    let mut old_gain = ideal.gain;
    let mut i = 0;
    while i < j.rels.len() && ideal.gain > 0.0 {
        let gain = gain_of(j.rels[i], gains);
        ideal.advance();
        if old_gain != ideal.gain {
            if ideal_dcg > 0.0 {
                sum += dcg / ideal_dcg;
                changes += 1;
            }
            old_gain = ideal.gain;
        }
        if gain != 0.0 {
            dcg += gain / discount(i);
        }
        if ideal.gain > 0.0 {
            ideal_dcg += ideal.gain / discount(i);
        }
        i += 1;
    }
    if i < j.rels.len() {
        for (i, &r) in j.rels.iter().enumerate().skip(i) {
            let gain = gain_of(r, gains);
            if gain != 0.0 {
                dcg += gain / discount(i);
            }
        }
        i = j.rels.len();
        if ideal_dcg > 0.0 {
            sum += dcg / ideal_dcg;
            changes += 1;
        }
    }
    while ideal.gain > 0.0 {
        ideal.advance();
        if old_gain != ideal.gain {
            if ideal_dcg > 0.0 {
                sum += dcg / ideal_dcg;
                changes += 1;
            }
            old_gain = ideal.gain;
        }
        if ideal.gain > 0.0 {
            ideal_dcg += ideal.gain / discount(i);
        }
        i += 1;
    }
    sum / changes as f64
}

fn rbp(j: &Judged, params: &Params) -> f64 {
    let p = persistence(params);
    let mut gains = gains(pairs(params), j);
    // Gains are scaled into [0, 1] when any lies outside.
    let min = gains.iter().map(|g| g.gain).fold(f64::INFINITY, f64::min);
    let max = gains.iter().map(|g| g.gain).fold(f64::NEG_INFINITY, f64::max);
    if min < 0.0 || max > 1.0 {
        for g in &mut gains {
            g.gain = (g.gain - min) / (max - min);
        }
    }
    let (mut sum, mut weight) = (0.0, 1.0);
    for &r in &j.rels {
        let gain = gain_of(r, &gains);
        if gain != 0.0 {
            sum += gain * weight;
        }
        weight *= p;
    }
    (1.0 - p) * sum
}

/// One query's values, in the order of [`Measures::value_names`].
#[derive(Debug, Clone, PartialEq)]
pub struct QueryValues {
    pub qid: String,
    pub values: Vec<f64>,
    /// `relstring`'s text, when asked for.
    pub relstring: Option<String>,
}

/// trec_eval's output for a run: every evaluated query and the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    measures: Measures,
    run_id: String,
    queries: Vec<QueryValues>,
    summary: Vec<f64>,
}

/// Evaluates `run` against `qrels` as trec_eval 10.0 does (see the module
/// docs); `run_id` is what the `runid` measure prints. Queries whose
/// judgement map is empty count as absent from the qrels. Fails when a query
/// retrieves a document twice or when no query of the qrels has results.
pub fn evaluate(
    qrels: &Qrels,
    run: &Run,
    run_id: &str,
    measures: &Measures,
    options: &Options,
) -> Result<Evaluation, String> {
    let missing = vec![(MISSING_QUERY_DOC.to_string(), 1.0)];
    let mut queries = Vec::new();
    let mut matched = 0;
    for (qid, judged) in qrels.iter().filter(|(_, j)| !j.is_empty()) {
        let docs = match run.get(qid) {
            Some(docs) => {
                matched += 1;
                docs
            }
            None if options.complete => &missing,
            None => continue,
        };
        let j = Judged::new(qid, docs, judged, options)?;
        let mut values = vec![0.0; measures.num_values()];
        let mut relstring = None;
        let mut at = 0;
        for m in &measures.list {
            let n = m.names.len();
            m.compute(&j, options, &mut values[at..at + n], &mut relstring);
            at += n;
        }
        if run.get(qid).is_none() {
            // trec_eval's clean-up after scoring its stand-in document.
            for (name, v) in measures.value_names().zip(&mut values) {
                if name == "num_ret" || name == "utility" || name == "rbp_resid" || name.starts_with("unj") {
                    *v = 0.0;
                }
                if name == "relstring" {
                    relstring = Some(String::new());
                }
            }
        }
        queries.push(QueryValues {
            qid: qid.clone(),
            values,
            relstring,
        });
    }
    if matched == 0 {
        return Err("no query of the run has judgements in the qrels".into());
    }
    let summary = summarize(qrels, measures, &queries, options);
    Ok(Evaluation {
        measures: measures.clone(),
        run_id: run_id.to_string(),
        queries,
        summary,
    })
}

/// The `all` values: sums in query order, then each measure's average.
fn summarize(qrels: &Qrels, measures: &Measures, queries: &[QueryValues], options: &Options) -> Vec<f64> {
    let mut sums = vec![0.0; measures.num_values()];
    for q in queries {
        for (s, v) in sums.iter_mut().zip(&q.values) {
            *s += v;
        }
    }
    let n = queries.len() as f64;
    let mut at = 0;
    for m in &measures.list {
        let values = &mut sums[at..at + m.names.len()];
        at += m.names.len();
        match m.kind {
            Kind::NumQ => values[0] = n,
            Kind::NumRet | Kind::NumRelRet | Kind::NumNonrelJudgedRet => {}
            Kind::NumRel if options.complete => {
                // trec_eval counts rel > 0 here, whatever -l says.
                let positive = qrels.values().flat_map(|j| j.values()).filter(|&&r| r > 0).count();
                values[0] = positive as f64;
            }
            Kind::NumRel => {}
            Kind::GmMap | Kind::GmBpref => values[0] = (values[0] / n).exp(),
            _ => values.iter_mut().for_each(|v| *v /= n),
        }
    }
    sums
}

impl Evaluation {
    /// Each evaluated query's values, in qrels order.
    pub fn queries(&self) -> &[QueryValues] {
        &self.queries
    }

    /// The names of the values, in print order.
    pub fn value_names(&self) -> impl Iterator<Item = &str> {
        self.measures.value_names()
    }

    /// The summary (`all`) value of each name, for the measures that have one.
    pub fn summary(&self) -> Vec<(&str, f64)> {
        self.lines()
            .filter(|(kind, _, _)| summary_printed(*kind))
            .map(|(_, name, i)| (name, self.summary[i]))
            .collect()
    }

    /// Number of queries of the run that have judgements.
    pub fn num_queries(&self) -> usize {
        self.queries.len()
    }

    /// (kind, value name, index) of every value.
    fn lines(&self) -> impl Iterator<Item = (Kind, &str, usize)> {
        self.measures
            .list
            .iter()
            .flat_map(|m| m.names.iter().map(move |name| (m.kind, name.as_str())))
            .enumerate()
            .map(|(i, (kind, name))| (kind, name, i))
    }

    /// What trec_eval prints: with `per_query` (`-q`) each query's lines,
    /// then, with `summary` (no `-n`), the lines for `all`.
    pub fn format(&self, per_query: bool, summary: bool) -> String {
        let mut out = String::new();
        if per_query {
            for q in &self.queries {
                for (kind, name, i) in self.lines() {
                    match kind {
                        Kind::Runid | Kind::NumQ | Kind::GmMap | Kind::GmBpref => {}
                        Kind::Relstring => {
                            let text = q.relstring.as_deref().unwrap_or("");
                            let _ = writeln!(out, "{name:<22}\t{}\t'{text}'", q.qid);
                        }
                        _ => write_value(&mut out, kind, name, &q.qid, q.values[i]),
                    }
                }
            }
        }
        if summary {
            for (kind, name, i) in self.lines() {
                match kind {
                    Kind::Runid => {
                        let _ = writeln!(out, "{name:<22}\tall\t{}", self.run_id);
                    }
                    Kind::Relstring => {}
                    _ => write_value(&mut out, kind, name, "all", self.summary[i]),
                }
            }
        }
        out
    }
}

fn summary_printed(kind: Kind) -> bool {
    !matches!(kind, Kind::Runid | Kind::Relstring)
}

fn write_value(out: &mut String, kind: Kind, name: &str, qid: &str, value: f64) {
    let _ = match kind {
        Kind::NumQ | Kind::NumRet | Kind::NumRel | Kind::NumRelRet | Kind::NumNonrelJudgedRet => {
            writeln!(out, "{name:<22}\t{qid}\t{}", value as i64)
        }
        _ => writeln!(out, "{name:<22}\t{qid}\t{}", c_fixed4(value)),
    };
}

/// C's `%6.4f`, except that zero is never printed as `-0.0000`.
pub fn c_fixed4(value: f64) -> String {
    if value.is_nan() {
        // x86's default NaN (0/0) has its sign bit set: glibc prints "-nan".
        format!("{:>6}", if value.is_sign_negative() { "-nan" } else { "nan" })
    } else if value.is_infinite() {
        format!("{:>6}", if value < 0.0 { "-inf" } else { "inf" })
    } else {
        format!("{:6.4}", value + 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qrels(rows: &[(&str, &str, i64)]) -> Qrels {
        let mut q = Qrels::new();
        for (qid, doc, rel) in rows {
            q.entry(qid.to_string()).or_default().insert(doc.to_string(), *rel);
        }
        q
    }

    fn run(rows: &[(&str, &str, f64)]) -> Run {
        let mut r = Run::new();
        for (qid, doc, score) in rows {
            r.entry(qid.to_string()).or_default().push((doc.to_string(), *score));
        }
        r
    }

    #[test]
    fn zero_is_never_printed_negative() {
        assert_eq!(c_fixed4(-0.0), "0.0000");
        assert_eq!(c_fixed4(0.0), "0.0000");
        assert_eq!(c_fixed4(0.03125), "0.0312", "ties to even, as glibc");
        assert_eq!(c_fixed4(-369.0), "-369.0000");
        assert_eq!(c_fixed4(f64::NAN.copysign(-1.0)), "  -nan");
    }

    #[test]
    fn map_cut_of_a_query_without_relevant_documents_in_the_cut_is_plus_zero() {
        let q = qrels(&[("1", "a", 1), ("1", "b", 0)]);
        let r = run(&[("1", "b", 2.0), ("1", "c", 1.0), ("1", "a", 0.5)]);
        let m = Measures::parse(&["map_cut.1,2"]).unwrap();
        let e = evaluate(&q, &r, "t", &m, &Options::default()).unwrap();
        let text = e.format(true, true);
        assert!(!text.contains("-0.0000"), "{text}");
        assert!(text.contains("map_cut_1             \t1\t0.0000"), "{text}");
    }

    #[test]
    fn measure_specs_follow_trec_eval() {
        let names = |specs: &[&str]| -> Vec<String> {
            Measures::parse(specs)
                .unwrap()
                .value_names()
                .map(String::from)
                .collect()
        };
        assert_eq!(names(&["P.5,7,3"]), ["P_3", "P_5", "P_7"]);
        assert_eq!(
            names(&["ndcg_cut.10,20,23.4"]),
            ["ndcg_cut_10", "ndcg_cut_20", "ndcg_cut_23"]
        );
        assert_eq!(
            names(&["iprec_at_recall..10,.20"]),
            ["iprec_at_recall_0.10", "iprec_at_recall_0.20"]
        );
        assert_eq!(names(&["ndcg.1=3,2=9,4=4.5"]), ["ndcg_1=3,2=9,4=4.5"]);
        assert_eq!(names(&["utility.2,-1,0,0"]), ["utility_2,-1,0,0"]);
        assert_eq!(names(&["success"]), ["success_1", "success_5", "success_10"]);
        // Table order, whatever the command-line order; the first parameters win.
        assert_eq!(
            names(&["recip_rank", "map", "P.2", "P.9"]),
            ["map", "recip_rank", "P_2"]
        );
        assert_eq!(names(&["official"]).len(), 30);
        assert_eq!(
            names(&["all_trec", "relstring.20"])[29..32],
            ["P_1000", "relstring_20", "recall_5"]
        );
        for bad in [
            "P.0",
            "P.5,5",
            "P.",
            "map.5",
            "utility.1,2",
            "ndcg.1",
            "bogus",
            "P_5",
            "prefs_simp",
        ] {
            assert!(Measures::parse(&[bad]).is_err(), "{bad}");
        }
        let err = Measures::parse(&["ndcg_cut_10"]).unwrap_err();
        assert!(err.contains("did you mean 'ndcg_cut.10'"), "{err}");
        assert!(Measures::parse(&["yaap"]).unwrap_err().contains("does not implement"));
    }

    #[test]
    fn c_number_parsing() {
        assert_eq!(c_atol("23.4"), 23);
        assert_eq!(c_atol(" -7x"), -7);
        assert_eq!(c_atol("x"), 0);
        assert_eq!(c_atof(".25"), 0.25);
        assert_eq!(c_atof("4.5e1x"), 45.0);
        assert_eq!(c_atof("1e"), 1.0);
        assert_eq!(c_atof("-"), 0.0);
    }

    #[test]
    fn gains_sort_like_glibc_with_the_truncating_comparator() {
        // 0.5 and 0.2 are "equal" to trec_eval's comparator: order kept.
        let mut v = [0.5, 3.0, 0.2, -1.0];
        glibc_merge_sort(&mut v, &|a: &f64, b: &f64| (a - b) as i32);
        assert_eq!(v, [-1.0, 0.5, 0.2, 3.0]);
    }

    #[test]
    fn complete_scores_missing_queries_and_rejects_no_overlap() {
        let q = qrels(&[("1", "a", 1), ("2", "b", 1)]);
        let r = run(&[("1", "a", 1.0)]);
        let m = Measures::parse(&["num_q", "num_ret", "map"]).unwrap();
        let plain = evaluate(&q, &r, "t", &m, &Options::default()).unwrap();
        assert_eq!(plain.summary(), [("num_q", 1.0), ("num_ret", 1.0), ("map", 1.0)]);
        let complete = Options {
            complete: true,
            ..Options::default()
        };
        let c = evaluate(&q, &r, "t", &m, &complete).unwrap();
        assert_eq!(c.summary(), [("num_q", 2.0), ("num_ret", 1.0), ("map", 0.5)]);
        assert!(c.format(true, false).contains("num_ret               \t2\t0\n"));
        let none = run(&[("9", "a", 1.0)]);
        for options in [Options::default(), complete] {
            let err = evaluate(&q, &none, "t", &m, &options).unwrap_err();
            assert!(err.contains("no query of the run"), "{err}");
        }
    }

    #[test]
    fn scores_compare_as_doubles_or_floats() {
        // Distinct doubles, the same float: the tie goes to the larger id.
        let docs = vec![("a".to_string(), 0.1 + 1e-12), ("b".to_string(), 0.1)];
        let ids = |s| -> Vec<String> { rank("q", &docs, s).unwrap().into_iter().map(|d| d.0).collect() };
        assert_eq!(ids(Scores::Double), ["a", "b"]);
        assert_eq!(ids(Scores::Float), ["b", "a"]);
    }
}
