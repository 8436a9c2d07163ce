//! The analysis step's answer, read tolerantly: models wrap JSON in code fences or prose, write
//! `"CALL_READY"` or `"call-ready"`, put numbers and booleans in strings, leave trailing commas.
//! What cannot be read is an [`AnalysisError`], and the caller keeps the phase it had.

use serde_json::{Map, Value};

use super::conversation::Phase;

/// What the analysis step said about the conversation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Analysis {
    pub phase: Option<Phase>,
    /// 0.0–1.0; a percentage is scaled down.
    pub confidence: Option<f32>,
    pub answer_question_first: bool,
    pub mention_founders: bool,
    pub call_offered_in_history: bool,
    pub call_declined_in_history: bool,
    /// The model's reason, for the conversation page (never logged).
    pub reasoning: Option<String>,
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalysisError {
    #[error("the answer holds no JSON object")]
    NoObject,
    #[error("the answer's JSON object does not parse")]
    Malformed,
    #[error("the answer names no phase")]
    NoPhase,
    #[error("the answer's phase {0:?} is not one of the five")]
    UnknownPhase(String),
}

/// Reads the analysis step's answer.
pub fn parse_analysis(answer: &str) -> Result<Analysis, AnalysisError> {
    let object = extract_object(answer)?;
    let phase = match object.get("phase").or_else(|| object.get("current_phase")) {
        Some(Value::String(text)) => match Phase::parse_loose(text) {
            Some(phase) => phase,
            None => return Err(AnalysisError::UnknownPhase(text.chars().take(40).collect())),
        },
        _ => return Err(AnalysisError::NoPhase),
    };
    let flag = |key: &str| object.get(key).and_then(loose_bool).unwrap_or(false);
    Ok(Analysis {
        phase: Some(phase),
        confidence: object.get("confidence").and_then(loose_confidence),
        answer_question_first: flag("answer_question_first"),
        mention_founders: flag("mention_founders"),
        call_offered_in_history: flag("call_offered_in_history"),
        call_declined_in_history: flag("call_declined_in_history"),
        reasoning: object
            .get("reasoning")
            .and_then(Value::as_str)
            .map(|text| text.chars().take(500).collect()),
    })
}

/// The first balanced `{…}` of the answer, parsed; fences and prose around it are ignored, and
/// trailing commas are forgiven.
fn extract_object(answer: &str) -> Result<Map<String, Value>, AnalysisError> {
    let mut found = false;
    let mut rest = answer;
    while let Some(start) = rest.find('{') {
        found = true;
        let candidate = &rest[start..];
        let Some(end) = balanced_end(candidate) else {
            break;
        };
        let text = &candidate[..end];
        let parsed = serde_json::from_str::<Value>(text)
            .or_else(|_| serde_json::from_str::<Value>(&without_trailing_commas(text)));
        if let Ok(Value::Object(object)) = parsed {
            return Ok(object);
        }
        rest = &candidate[1..];
    }
    Err(if found {
        AnalysisError::Malformed
    } else {
        AnalysisError::NoObject
    })
}

/// The byte length of the object starting at `text[0] == '{'`, skipping braces inside strings.
fn balanced_end(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut strings = StringTracker::default();
    for (index, character) in text.char_indices() {
        if strings.inside_after(character) {
            continue;
        }
        match character {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(index + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn without_trailing_commas(text: &str) -> String {
    let mut output = String::with_capacity(text.len());
    let mut strings = StringTracker::default();
    let characters: Vec<char> = text.chars().collect();
    for (index, &character) in characters.iter().enumerate() {
        if !strings.inside_after(character) && character == ',' {
            let next = characters[index + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}') | Some(']')) {
                continue;
            }
        }
        output.push(character);
    }
    output
}

/// Follows JSON strings through a text, character by character.
#[derive(Default)]
struct StringTracker {
    inside: bool,
    escaped: bool,
}

impl StringTracker {
    /// Takes the next character; whether it belongs to a string (its quotes included).
    fn inside_after(&mut self, character: char) -> bool {
        if self.inside {
            match character {
                _ if self.escaped => self.escaped = false,
                '\\' => self.escaped = true,
                '"' => self.inside = false,
                _ => {}
            }
            true
        } else if character == '"' {
            self.inside = true;
            true
        } else {
            false
        }
    }
}

fn loose_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::Number(number) => number.as_f64().map(|n| n != 0.0),
        Value::String(text) => match text.trim().to_lowercase().as_str() {
            "true" | "yes" | "1" | "да" => Some(true),
            "false" | "no" | "0" | "нет" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn loose_confidence(value: &Value) -> Option<f32> {
    let number = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().trim_end_matches('%').trim().parse().ok()?,
        _ => return None,
    };
    let number = if number > 1.0 { number / 100.0 } else { number };
    (0.0..=1.0).contains(&number).then_some(number as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase_of(answer: &str) -> Result<Phase, AnalysisError> {
        parse_analysis(answer).map(|analysis| analysis.phase.unwrap())
    }

    #[test]
    fn answers_as_models_write_them() {
        let check = |answer: &str, expected: Result<Phase, AnalysisError>| {
            assert_eq!(phase_of(answer), expected, "{answer}");
        };
        check(r#"{"phase": "engagement"}"#, Ok(Phase::Engagement));
        check(
            "```json\n{\"phase\": \"CALL_READY\", \"confidence\": 0.9}\n```",
            Ok(Phase::CallReady),
        );
        check(
            "Вот анализ: {\"phase\": \"call-pending\", \"reasoning\": \"он сказал {да}\",} спасибо",
            Ok(Phase::CallPending),
        );
        check(
            r#"{"current_phase": "call declined"}"#,
            Ok(Phase::CallDeclined),
        );
        check("{broken} {\"phase\": \"discovery\"}", Ok(Phase::Discovery));
        check("no json at all", Err(AnalysisError::NoObject));
        check("{\"phase\": ", Err(AnalysisError::Malformed));
        check(r#"{"confidence": 1}"#, Err(AnalysisError::NoPhase));
        check(
            r#"{"phase": "negotiation"}"#,
            Err(AnalysisError::UnknownPhase("negotiation".into())),
        );
    }

    #[test]
    fn flags_and_confidence_in_loose_forms() {
        let analysis = parse_analysis(
            r#"{"phase": "engagement", "confidence": "85%", "answer_question_first": "да",
                "call_offered_in_history": 1, "call_declined_in_history": "no",
                "mention_founders": null}"#,
        )
        .unwrap();
        assert_eq!(analysis.confidence, Some(0.85));
        assert!(analysis.answer_question_first);
        assert!(analysis.call_offered_in_history);
        assert!(!analysis.call_declined_in_history);
        assert!(!analysis.mention_founders);
        let analysis = parse_analysis(r#"{"phase": "engagement", "confidence": 7000}"#).unwrap();
        assert_eq!(analysis.confidence, None);
    }

    proptest::proptest! {
        /// Whatever a model answers, reading it never panics.
        #[test]
        fn any_answer_is_read_without_panicking(answer in ".{0,200}") {
            let _ = parse_analysis(&answer);
        }
    }
}
