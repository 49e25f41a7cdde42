//! HTML that is escaped by construction: markup comes only from `&'static str` (written in
//! this crate), and everything else goes through [`Html::text`], which escapes it. No
//! caller-supplied, token-supplied or stored text can open a tag or an attribute.

/// A page being written.
#[derive(Debug, Default)]
pub(crate) struct Html(String);

impl Html {
    /// Markup written here, in the source.
    pub(crate) fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// Text from anywhere else, escaped for element content and for quoted attribute values.
    pub(crate) fn text(&mut self, text: &str) -> &mut Self {
        for c in text.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                c if c.is_control() && c != '\n' => self.0.push('\u{fffd}'),
                c => self.0.push(c),
            }
        }
        self
    }

    /// The page.
    pub(crate) fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Html;

    #[test]
    fn text_cannot_open_markup() {
        let mut h = Html::default();
        h.raw("<p title=\"")
            .text("\"><script>alert('x')</script>&")
            .raw("\">");
        assert_eq!(
            h.finish(),
            "<p title=\"&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;\">"
        );
    }

    #[test]
    fn control_characters_are_replaced() {
        let mut h = Html::default();
        h.text("a\u{0}b\u{1b}c");
        assert_eq!(h.finish(), "a\u{fffd}b\u{fffd}c");
    }
}
