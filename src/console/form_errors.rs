//! Mistakes in a console form, shown the NHS.UK way (the `nhsuk-frontend` error summary and
//! error message patterns): an error summary at the top of the page (`nhsuk-error-summary`,
//! announced as an alert) listing every mistake, each a link to its field; and beside each
//! field its own message, which the field names with `aria-describedby` and which marks it
//! `aria-invalid="true"`.
//!
//! A message never repeats what was typed (it may be an NHS number). Messages are the
//! errors' own texts, lowercase as every error of the crate is written.

use super::html::Html;

/// One mistake: in the field whose `id` is `field`, or in the form as a whole (`None`: a
/// link the console did not make, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mistake {
    /// The id of the field (an `<input>`, `<select>` or `<textarea>`, or the first radio of
    /// a group), a constant of this code.
    pub(super) field: Option<&'static str>,
    /// What is wrong and how to put it right.
    pub(super) message: String,
}

impl Mistake {
    /// A mistake in `field`.
    pub(super) fn at(field: &'static str, message: impl ToString) -> Mistake {
        Mistake {
            field: Some(field),
            message: message.to_string(),
        }
    }

    /// A mistake in no one field.
    pub(super) fn whole(message: impl ToString) -> Mistake {
        Mistake {
            field: None,
            message: message.to_string(),
        }
    }
}

/// The first mistake in `field`, if any.
fn of<'a>(mistakes: &'a [Mistake], field: &str) -> Option<&'a Mistake> {
    mistakes.iter().find(|m| m.field == Some(field))
}

/// The error summary, at the top of the page, when there is a mistake.
pub(super) fn summary(h: &mut Html, mistakes: &[Mistake]) {
    if mistakes.is_empty() {
        return;
    }
    h.raw("<div class=\"nhsuk-error-summary error-summary\" aria-labelledby=\"error-summary-title\" role=\"alert\" id=\"form-error\">\n<h2 class=\"nhsuk-error-summary__title\" id=\"error-summary-title\">There is a problem</h2>\n<div class=\"nhsuk-error-summary__body\"><ul class=\"nhsuk-list nhsuk-error-summary__list\">\n");
    for m in mistakes {
        h.raw("<li>");
        match m.field {
            Some(field) => {
                h.raw("<a href=\"#")
                    .raw(field)
                    .raw("\">")
                    .text(&m.message)
                    .raw("</a>");
            }
            None => {
                h.text(&m.message);
            }
        }
        h.raw("</li>\n");
    }
    h.raw("</ul></div>\n</div>\n");
}

/// The class of a field's group: `base`, and the error style when it has a mistake.
pub(super) fn group_class(
    h: &mut Html,
    mistakes: &[Mistake],
    field: &'static str,
    base: &'static str,
) {
    h.raw(base);
    if of(mistakes, field).is_some() {
        h.raw(" nhsuk-form-group--error");
    }
}

/// The field's own message (`{field}-error`), when it has a mistake: between its label and
/// the field, as NHS.UK places it.
pub(super) fn message(h: &mut Html, mistakes: &[Mistake], field: &'static str) {
    if let Some(m) = of(mistakes, field) {
        h.raw("<span class=\"nhsuk-error-message\" id=\"")
            .raw(field)
            .raw("-error\"><span class=\"visually-hidden\">Error:</span> ")
            .text(&m.message)
            .raw("</span>");
    }
}

/// The attributes of a field (or a radio group) with a mistake: ` aria-invalid="true"
/// aria-describedby="{id}-error[ {hint}]"`; without one, ` aria-describedby="{hint}"` when
/// it has a hint, else nothing. `id` names the message (the field's id, or the first
/// radio's for a group).
pub(super) fn attributes(
    h: &mut Html,
    mistakes: &[Mistake],
    id: &'static str,
    hint: Option<&'static str>,
) {
    if of(mistakes, id).is_some() {
        h.raw(" aria-invalid=\"true\" aria-describedby=\"")
            .raw(id)
            .raw("-error");
        if let Some(hint) = hint {
            h.raw(" ").raw(hint);
        }
        h.raw("\"");
    } else if let Some(hint) = hint {
        h.raw(" aria-describedby=\"").raw(hint).raw("\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistake_is_summarised_linked_and_described() {
        let mistakes = [
            Mistake::at("f-nhs", "the NHS number must be 10 digits"),
            Mistake::whole("this link was not made by this console"),
        ];
        let mut h = Html::default();
        summary(&mut h, &mistakes);
        let top = h.finish();
        assert!(top.contains("class=\"nhsuk-error-summary"), "{top}");
        assert!(top.contains("role=\"alert\""), "{top}");
        assert!(
            top.contains("<li><a href=\"#f-nhs\">the NHS number must be 10 digits</a></li>"),
            "{top}"
        );
        assert!(
            top.contains("<li>this link was not made by this console</li>"),
            "{top}"
        );

        let mut h = Html::default();
        group_class(&mut h, &mistakes, "f-nhs", "field");
        message(&mut h, &mistakes, "f-nhs");
        attributes(&mut h, &mistakes, "f-nhs", Some("f-nhs-hint"));
        assert_eq!(
            h.finish(),
            "field nhsuk-form-group--error<span class=\"nhsuk-error-message\" id=\"f-nhs-error\"><span class=\"visually-hidden\">Error:</span> the NHS number must be 10 digits</span> aria-invalid=\"true\" aria-describedby=\"f-nhs-error f-nhs-hint\""
        );

        let mut h = Html::default();
        group_class(&mut h, &mistakes, "f-user", "field");
        message(&mut h, &mistakes, "f-user");
        attributes(&mut h, &mistakes, "f-user", None);
        attributes(&mut h, &mistakes, "f-user", Some("f-user-hint"));
        assert_eq!(h.finish(), "field aria-describedby=\"f-user-hint\"");

        let mut h = Html::default();
        summary(&mut h, &[]);
        assert_eq!(h.finish(), "", "no mistake, no summary");
    }
}
