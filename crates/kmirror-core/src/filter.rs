//! Topic and group name filters with MM2's list semantics (MM2-COMPAT §4.1, §5.1).
//!
//! MM2's `topics`, `topics.exclude`, `groups` and `groups.exclude` are LIST configs: split on
//! commas (whitespace around items trimmed), joined with `|`, and matched against the **whole**
//! name. An empty list matches nothing. Exclusion wins over inclusion.

use regex::Regex;

/// MM2's default `topics`.
pub const DEFAULT_TOPICS: &str = ".*";
/// MM2's default `topics.exclude`.
pub const DEFAULT_TOPICS_EXCLUDE: &str = r".*[\-\.]internal, .*\.replica, __.*";
/// MM2's default `groups`.
pub const DEFAULT_GROUPS: &str = ".*";
/// MM2's default `groups.exclude`.
pub const DEFAULT_GROUPS_EXCLUDE: &str = "console-consumer-.*, connect-.*, __.*";

/// A compiled MM2 list pattern.
#[derive(Clone, Debug)]
pub struct ListPattern {
    source: String,
    regex: Option<Regex>,
}

impl ListPattern {
    /// Compiles an MM2 list value. The error is the regex compiler's message.
    pub fn parse(list: &str) -> Result<Self, regex::Error> {
        let items: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let regex = if items.is_empty() {
            None
        } else {
            Some(Regex::new(&format!("^(?:{})$", items.join("|")))?)
        };
        Ok(Self {
            source: list.to_owned(),
            regex,
        })
    }

    /// The empty list: matches nothing.
    pub fn empty() -> Self {
        Self {
            source: String::new(),
            regex: None,
        }
    }

    /// Whether the whole `name` matches one of the items.
    pub fn matches(&self, name: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.is_match(name))
    }

    /// The list as configured.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Include and exclude lists together.
#[derive(Clone, Debug)]
pub struct NameFilter {
    include: ListPattern,
    exclude: ListPattern,
}

impl NameFilter {
    /// Builds a filter from compiled lists.
    pub fn new(include: ListPattern, exclude: ListPattern) -> Self {
        Self { include, exclude }
    }

    /// MM2's default topic filter.
    pub fn default_topics() -> Self {
        Self::from_defaults(DEFAULT_TOPICS, DEFAULT_TOPICS_EXCLUDE)
    }

    /// MM2's default group filter.
    pub fn default_groups() -> Self {
        Self::from_defaults(DEFAULT_GROUPS, DEFAULT_GROUPS_EXCLUDE)
    }

    fn from_defaults(include: &str, exclude: &str) -> Self {
        // The defaults are constant, valid patterns (checked by a unit test).
        let compile = |p: &str| ListPattern::parse(p).unwrap_or_else(|_| ListPattern::empty());
        Self::new(compile(include), compile(exclude))
    }

    /// Whether `name` passes: included and not excluded.
    pub fn accepts(&self, name: &str) -> bool {
        self.include.matches(name) && !self.exclude.matches(name)
    }

    /// The include list as configured.
    pub fn include(&self) -> &ListPattern {
        &self.include
    }

    /// The exclude list as configured.
    pub fn exclude(&self) -> &ListPattern {
        &self.exclude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_compile_and_behave_like_mm2() {
        assert!(ListPattern::parse(DEFAULT_TOPICS_EXCLUDE).is_ok());
        assert!(ListPattern::parse(DEFAULT_GROUPS_EXCLUDE).is_ok());
        let f = NameFilter::default_topics();
        assert!(f.accepts("orders"));
        assert!(!f.accepts("mm2-offsets.a.internal"));
        assert!(!f.accepts("x-internal"));
        assert!(!f.accepts("orders.replica"));
        assert!(!f.accepts("__consumer_offsets"));
        let g = NameFilter::default_groups();
        assert!(g.accepts("billing"));
        assert!(!g.accepts("console-consumer-1234"));
        assert!(!g.accepts("connect-mm2"));
    }

    #[test]
    fn list_items_are_trimmed_and_match_whole_names() {
        let p = ListPattern::parse(" test-topic-.* , primary\\.test-topic-.*").expect("valid");
        assert!(p.matches("test-topic-1"));
        assert!(p.matches("primary.test-topic-2"));
        assert!(!p.matches("xtest-topic-1"));
        assert!(!p.matches("test-topic"));
    }

    #[test]
    fn empty_lists_match_nothing_and_exclude_wins() {
        let empty = ListPattern::parse("").expect("valid");
        assert!(!empty.matches("anything"));
        let f = NameFilter::new(
            ListPattern::parse(".*").expect("valid"),
            ListPattern::parse("secret-.*").expect("valid"),
        );
        assert!(f.accepts("orders"));
        assert!(!f.accepts("secret-x"));
        let nothing = NameFilter::new(empty, ListPattern::parse("").expect("valid"));
        assert!(!nothing.accepts("orders"));
    }
}
