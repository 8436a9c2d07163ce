//! The auto-response template: text with named placeholders, parsed once (so an unknown
//! placeholder is a configuration error, not a surprise in a recruiter's chat) and rendered per
//! contact.
//!
//! Syntax: `{first_name}`, `{channel_name}`, `{source_title}`, `{vacancy_link}`; `{{` and `}}`
//! stand for literal braces. Anything else between braces is an error that names it.

use std::fmt;

/// A value a template may refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placeholder {
    /// The contact's first name as Telegram shows it (known only after resolving the contact).
    FirstName,
    /// The output channel's name.
    ChannelName,
    /// The title of the source chat the vacancy was posted in.
    SourceTitle,
    /// The link to the vacancy post.
    VacancyLink,
}

impl Placeholder {
    pub const ALL: [Self; 4] = [
        Self::FirstName,
        Self::ChannelName,
        Self::SourceTitle,
        Self::VacancyLink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::FirstName => "first_name",
            Self::ChannelName => "channel_name",
            Self::SourceTitle => "source_title",
            Self::VacancyLink => "vacancy_link",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// `{first_name}, {channel_name}, …` for error messages.
    pub fn list() -> String {
        Self::ALL
            .iter()
            .map(|p| format!("{{{}}}", p.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Placeholder),
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{name}}}; use {}", Placeholder::list())]
    UnknownPlaceholder { name: String },
    #[error("a '{{' is not closed; write {{{{ for a literal brace")]
    Unclosed,
    #[error("a '}}' has no opening brace; write }}}} for a literal brace")]
    UnmatchedClose,
}

/// The values of one rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TemplateValues<'a> {
    pub first_name: &'a str,
    pub channel_name: &'a str,
    pub source_title: &'a str,
    pub vacancy_link: &'a str,
}

impl TemplateValues<'_> {
    fn get(&self, placeholder: Placeholder) -> &str {
        match placeholder {
            Placeholder::FirstName => self.first_name,
            Placeholder::ChannelName => self.channel_name,
            Placeholder::SourceTitle => self.source_title,
            Placeholder::VacancyLink => self.vacancy_link,
        }
    }
}

pub fn parse_template(text: &str) -> Result<Template, TemplateError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '}' => return Err(TemplateError::UnmatchedClose),
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(TemplateError::Unclosed),
                    }
                }
                let placeholder = Placeholder::parse(name.trim())
                    .ok_or(TemplateError::UnknownPlaceholder { name })?;
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Value(placeholder));
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(Template { parts })
}

impl Template {
    pub fn render(&self, values: &TemplateValues<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value(placeholder) => out.push_str(values.get(*placeholder)),
            }
        }
        out
    }

    /// Whether the template refers to `placeholder`.
    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.parts.contains(&Part::Value(placeholder))
    }
}

impl fmt::Display for Template {
    /// The template as it would be written (braces escaped), so render∘parse round-trips.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(&text.replace('{', "{{").replace('}', "}}"))?,
                Part::Value(placeholder) => write!(f, "{{{}}}", placeholder.name())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: TemplateValues<'static> = TemplateValues {
        first_name: "Anna",
        channel_name: "Python Jobs",
        source_title: "Remote IT",
        vacancy_link: "https://t.me/remote_it/5",
    };

    fn check(template: &str, expected: Result<&str, TemplateError>) {
        let rendered = parse_template(template).map(|t| t.render(&VALUES));
        assert_eq!(
            rendered.as_deref().map_err(Clone::clone),
            expected,
            "{template}"
        );
    }

    #[test]
    fn renders_and_rejects() {
        check("Hello!", Ok("Hello!"));
        check("", Ok(""));
        check("Hi {first_name}!", Ok("Hi Anna!"));
        check(
            "{first_name}: {channel_name} / {source_title} / {vacancy_link}",
            Ok("Anna: Python Jobs / Remote IT / https://t.me/remote_it/5"),
        );
        check("{ first_name }", Ok("Anna"));
        check("{{first_name}}", Ok("{first_name}"));
        check("a {{ b }} c", Ok("a { b } c"));
        check("Здравствуйте, {first_name}!", Ok("Здравствуйте, Anna!"));
        check(
            "salary {salary}",
            Err(TemplateError::UnknownPlaceholder {
                name: "salary".into(),
            }),
        );
        check("{first_name", Err(TemplateError::Unclosed));
        check("oops }", Err(TemplateError::UnmatchedClose));
    }

    #[test]
    fn the_error_names_the_placeholder_and_the_known_ones() {
        let error = parse_template("{salary}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown placeholder {salary}; use {first_name}, {channel_name}, {source_title}, {vacancy_link}"
        );
    }

    #[test]
    fn display_round_trips() {
        for text in ["a {{x}} {first_name}", "{vacancy_link}}}", "plain"] {
            let template = parse_template(text).unwrap();
            assert_eq!(parse_template(&template.to_string()).unwrap(), template);
        }
    }
}
