//! Keyboard use for browser tests (WCAG 2.1.1 Keyboard, 2.4.7 Focus Visible): the page the
//! [`Browser`] shows is walked with the Tab key, pressed through WebDriver as a keyboard
//! would, and [`check`] fails the test when an action on the page (a link, a button, a field,
//! a `<details>`' summary) is never reached, or is reached without a visible focus style
//! (an outline at least 2 px wide, or a changed shadow or background), or takes the focus
//! while off the page (a skip link that stays hidden).
//!
//! A radio group is one stop of the Tab key (its arrow keys move within it), so a group
//! counts as reached when one of its buttons is. What axe-core cannot see (it never presses
//! a key) is what this checks; the two run together.

use serde_json::{Value, json};

use super::browser::Browser;

/// WebDriver's Tab key.
const TAB: char = '\u{E004}';

/// Shared by both scripts: the page's actions, how an element is named in a report, and the
/// styles that show focus.
const PRELUDE: &str = r"
const done = arguments[arguments.length - 1];
const actions = () => [...document.querySelectorAll(
    'a[href], button, input, select, textarea, summary, [tabindex]')]
  .filter((el) => el.type !== 'hidden' && !el.disabled && el.checkVisibility()
    && (el.tabIndex >= 0 || el.matches('a[href], button, input, select, textarea, summary')));
const name = (el) => {
  let s = el.tagName.toLowerCase();
  if (el.id) s += '#' + el.id;
  else if (el.name) s += '[name=' + el.name + ']';
  const text = (el.innerText || el.value || '').trim().replace(/\s+/g, ' ').slice(0, 40);
  return text ? s + ' \u201c' + text + '\u201d' : s;
};
const look = (el) => {
  const s = getComputedStyle(el);
  return {
    outline: s.outlineStyle === 'none' ? 0 : parseFloat(s.outlineWidth) || 0,
    outlineColor: s.outlineColor, shadow: s.boxShadow, background: s.backgroundColor,
  };
};
";

/// Starts listening for focus (the styles are read the moment an element takes it) and
/// answers how many actions the page has. The walk starts at the top of the page, as for a
/// keyboard user who has just arrived: a span put first in the body takes the focus and
/// gives it up, so the first Tab goes to the page's first action wherever the focus was
/// left (after a link to a field, the walk used to start past it and reach the first
/// actions only by wrapping round through the browser's own controls, where a busy
/// machine could find the skip link before its focus style applied).
const LISTEN: &str = r"
const origin = document.createElement('span');
origin.id = '__keyboard_origin';
origin.tabIndex = -1;
document.body.prepend(origin);
origin.focus();
window.__keyboard = [];
document.addEventListener('focusin', (e) => {
  const r = e.target.getBoundingClientRect();
  window.__keyboard.push({ el: e.target, look: look(e.target),
    box: [r.left + scrollX, r.top + scrollY, r.width, r.height] });
}, true);
if (document.activeElement) document.activeElement.blur();
done(actions().length);
";

/// Answers what was reached, in order, and what is wrong.
const READ: &str = r"
const log = window.__keyboard;
if (!log) { done({ failed: 'the focus listener is gone: the page changed' }); return; }
if (document.activeElement) document.activeElement.blur();
const seen = new Map();
for (const s of log) if (!seen.has(s.el)) seen.set(s.el, s);
const problems = [];
for (const [el, s] of seen) {
  const rest = look(el);
  const outlined = s.look.outline >= 2 && s.look.outlineColor !== 'rgba(0, 0, 0, 0)'
    && (rest.outline < 2 || rest.outlineColor !== s.look.outlineColor);
  const changed = s.look.shadow !== rest.shadow || s.look.background !== rest.background;
  if (!outlined && !changed) problems.push(name(el) + ': no visible focus style');
  const [x, y, w, h] = s.box;
  if (w < 2 || h < 2 || x + w <= 0 || y + h <= 0) problems.push(name(el) + ': focused off the page');
}
const group = (el) => el.type === 'radio'
  && [...seen.keys()].some((o) => o.type === 'radio' && o.name === el.name && o.form === el.form);
for (const el of actions()) {
  if (!seen.has(el) && !group(el)) problems.push(name(el) + ': never reached by Tab');
}
document.getElementById('__keyboard_origin')?.remove();
done({ problems, order: [...seen.keys()].map(name) });
";

/// What is wrong with keyboard use of the page `browser` shows: one line per problem.
pub(crate) async fn problems(browser: &Browser) -> Vec<String> {
    let count = browser
        .execute_async(&format!("{PRELUDE}{LISTEN}"), json!([]))
        .await;
    let Some(count) = count.as_u64() else {
        panic!("the focus listener did not start: {count}");
    };
    // Twice round the page and a little more, wherever the Tab key starts from.
    let count = usize::try_from(count).unwrap_or(0);
    browser.press(TAB, 2 * count + 4).await;
    let answer = browser
        .execute_async(&format!("{PRELUDE}{READ}"), json!([]))
        .await;
    let Some(problems) = answer["problems"].as_array() else {
        panic!("keyboard check failed on {}: {answer}", browser.url().await);
    };
    problems
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Walks the page `browser` shows with the Tab key, called `page` in the report: the test
/// fails when an action is not reached or shows no focus.
pub(crate) async fn check(browser: &Browser, page: &str) {
    let found = problems(browser).await;
    assert!(
        found.is_empty(),
        "keyboard use of {page} ({}):\n  {}",
        browser.url().await,
        found.join("\n  ")
    );
}
