//! A small, safe reader and writer for WeChat's flat XML documents (消息接收与被动回复的 XML 数据包).
//!
//! WeChat's messages are one `<xml>` root with leaf children, sometimes nested a level or two
//! (`ScanCodeInfo`, `SendPicsInfo.PicList.item`, `SubscribeMsgPopupEvent.List`). [`parse_flat`]
//! turns such a document into [`XmlFields`]: every leaf's text keyed by its path below the root,
//! in document order, so repeated groups keep all their values.
//!
//! Safety: no DTD, no entity definitions, no processing instructions (other than the `<?xml?>`
//! declaration) are accepted, so entity-expansion attacks (billion laughs, XXE) cannot happen;
//! only the five predefined entities and numeric character references are decoded.

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::{Error, Result};

/// Nesting deeper than this is not a WeChat message; refusing it bounds the work per byte.
const MAX_DEPTH: usize = 16;

const DOCTYPE_NOT_ALLOWED: &str = "DOCTYPE/entity not allowed";

/// The leaf values of a flat WeChat XML document, keyed by element path below `<xml>`.
///
/// Paths join element names with `.`: `Content`, `ScanCodeInfo.ScanResult`,
/// `SendPicsInfo.PicList.item.PicMd5Sum`. A path may occur many times (repeated groups); the
/// values keep document order. All keys and values live in one buffer, so parsing a message
/// costs a couple of allocations whatever its number of fields.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct XmlFields {
    buf: String,
    entries: Vec<Entry>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Entry {
    key_start: u32,
    /// The value starts where the key ends.
    key_end: u32,
    value_end: u32,
    /// Document-order number of the enclosing element (0: the root), to tell repeated groups apart.
    parent: u32,
}

/// One occurrence of a repeated group element (e.g. one `<List>` of a subscribe-message event),
/// with its direct leaf children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XmlGroup<'a> {
    children: Vec<(&'a str, &'a str)>,
}

impl<'a> XmlGroup<'a> {
    /// The first value of the direct child element `name`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.children
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// Every `(name, value)` of the group's direct leaf children in document order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.children.iter().copied()
    }
}

impl XmlFields {
    /// The first value at `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Every value at `key`, in document order.
    pub fn get_all<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.iter().filter(move |(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Whether `key` occurs at all (an empty element counts).
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every `(path, value)` pair in document order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(move |e| self.pair(e))
    }

    /// Each occurrence of the group element at `path` with its direct leaf children, in
    /// document order: `groups("SubscribeMsgPopupEvent.List")` gives one [`XmlGroup`] per
    /// `<List>`, so an optional child missing from one group never shifts values into another.
    pub fn groups(&self, path: &str) -> Vec<XmlGroup<'_>> {
        let mut out: Vec<XmlGroup<'_>> = Vec::new();
        let mut current_parent = None;
        for e in &self.entries {
            let (key, value) = self.pair(e);
            let name = match key.strip_prefix(path).and_then(|r| r.strip_prefix('.')) {
                Some(name) if !name.contains('.') => name,
                _ => continue,
            };
            if current_parent != Some(e.parent) {
                current_parent = Some(e.parent);
                out.push(XmlGroup::default());
            }
            if let Some(g) = out.last_mut() {
                g.children.push((name, value));
            }
        }
        out
    }

    fn pair(&self, e: &Entry) -> (&str, &str) {
        (
            &self.buf[e.key_start as usize..e.key_end as usize],
            &self.buf[e.key_end as usize..e.value_end as usize],
        )
    }

    /// Number of leaf values.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the document had no leaf values.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn push(&mut self, key: &str, value: &str, parent: u32) -> Result<()> {
        let to_u32 = |n: usize| u32::try_from(n).map_err(|_| Error::Decode("xml too large".into()));
        let key_start = to_u32(self.buf.len())?;
        self.buf.push_str(key);
        let key_end = to_u32(self.buf.len())?;
        self.buf.push_str(value);
        let value_end = to_u32(self.buf.len())?;
        self.entries.push(Entry {
            key_start,
            key_end,
            value_end,
            parent,
        });
        Ok(())
    }
}

impl std::fmt::Debug for XmlFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

fn decode_err(e: impl std::fmt::Display) -> Error {
    Error::Decode(format!("malformed xml: {e}"))
}

fn utf8(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|_| Error::Decode("xml is not utf-8".into()))
}

/// `part` (a name or text the reader found in `doc`) as a slice of `doc` itself: it is text
/// already, so it needs no second UTF-8 check. The reader splits only at ASCII markup, so the
/// ends are character boundaries (`get` checks); bytes from anywhere else are checked and copied.
fn in_doc<'a>(doc: &'a str, part: &[u8]) -> Result<Cow<'a, str>> {
    let start = (part.as_ptr() as usize).wrapping_sub(doc.as_ptr() as usize);
    match doc.get(start..start.wrapping_add(part.len())) {
        Some(s) if s.as_ptr() == part.as_ptr() => Ok(Cow::Borrowed(s)),
        _ => utf8(part).map(|s| Cow::Owned(s.to_owned())),
    }
}

/// Character data as text: borrowed from the document unless it holds an entity reference.
fn text_of<'a>(doc: &'a str, raw: &[u8]) -> Result<Cow<'a, str>> {
    let s = in_doc(doc, raw)?;
    if !s.contains('&') {
        return Ok(s);
    }
    quick_xml::escape::unescape(&s)
        .map(|c| Cow::Owned(c.into_owned()))
        .map_err(decode_err)
}

/// The text of the innermost open leaf. Most leaves hold one CDATA section or one run of text,
/// kept as a slice of the document; a leaf of several pieces is joined.
enum LeafText<'a> {
    Empty,
    One(Cow<'a, str>),
    Joined(String),
}

impl<'a> LeafText<'a> {
    fn push(&mut self, piece: Cow<'a, str>) {
        *self = match std::mem::replace(self, LeafText::Empty) {
            LeafText::Empty => LeafText::One(piece),
            LeafText::One(first) => LeafText::Joined(first.into_owned() + &piece),
            LeafText::Joined(mut all) => {
                all.push_str(&piece);
                LeafText::Joined(all)
            }
        };
    }

    fn as_str(&self) -> &str {
        match self {
            LeafText::Empty => "",
            LeafText::One(s) => s,
            LeafText::Joined(s) => s,
        }
    }
}

/// The open elements below the root, innermost last: for each, the path's length before its
/// name and its document-order number. At most [`MAX_DEPTH`] of them, so they live on the stack.
#[derive(Default)]
struct OpenElements {
    items: [(usize, u32); MAX_DEPTH],
    len: usize,
}

impl OpenElements {
    fn is_full(&self) -> bool {
        self.len == MAX_DEPTH
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The caller checks [`OpenElements::is_full`] first.
    fn push(&mut self, mark: usize, serial: u32) {
        self.items[self.len] = (mark, serial);
        self.len += 1;
    }

    /// The innermost element's path mark.
    fn pop(&mut self) -> Option<usize> {
        self.len = self.len.checked_sub(1)?;
        Some(self.items[self.len].0)
    }

    /// The document-order number of the innermost open element (0: the root).
    fn parent(&self) -> u32 {
        self.len.checked_sub(1).map_or(0, |i| self.items[i].1)
    }
}

/// Parses a WeChat `<xml>...</xml>` document into its leaf values (see [`XmlFields`]).
///
/// Rejects DOCTYPE, entity declarations and processing instructions other than the leading
/// `<?xml ...?>` declaration (`Error::Decode("DOCTYPE/entity not allowed")`), unknown entity
/// references, mismatched or unclosed tags, a root other than `<xml>`, text or elements outside
/// the root, and nesting deeper than 16 levels.
pub fn parse_flat(xml: &str) -> Result<XmlFields> {
    let mut reader = Reader::from_str(xml);
    // Mismatched end tags are malformed input, never silently accepted.
    reader.config_mut().check_end_names = true;

    let mut fields = XmlFields {
        buf: String::with_capacity(xml.len()),
        entries: Vec::with_capacity(16),
    };
    // Current path below the root, and the path length before each open element.
    let mut path = String::with_capacity(64);
    let mut open = OpenElements::default();
    let mut next_serial = 0u32;
    // Text of the innermost open element, and whether it has child elements (then it is no leaf).
    let mut text = LeafText::Empty;
    let mut has_children = false;
    // 0: before the root, 1: inside the root, 2: after the root.
    let mut state = 0u8;
    let mut seen_anything = false;

    loop {
        let event = reader.read_event().map_err(decode_err)?;
        match event {
            Event::Decl(_) => {
                if seen_anything {
                    return Err(Error::Decode(DOCTYPE_NOT_ALLOWED.into()));
                }
            }
            Event::DocType(_) | Event::PI(_) => {
                return Err(Error::Decode(DOCTYPE_NOT_ALLOWED.into()));
            }
            Event::Comment(_) => {}
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let name = in_doc(xml, e.name().into_inner())?;
                // Attributes are unused but must be well-formed (WeChat sends none: no cost).
                for attr in e.attributes() {
                    attr.map_err(decode_err)?;
                }
                match state {
                    0 => {
                        if name != "xml" {
                            return Err(Error::Decode(format!(
                                "root element is <{name}>, expected <xml>"
                            )));
                        }
                        state = if is_empty { 2 } else { 1 };
                    }
                    1 => {
                        if open.is_full() {
                            return Err(Error::Decode("xml nested too deeply".into()));
                        }
                        has_children = true;
                        let parent = open.parent();
                        let mark = path.len();
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(&name);
                        if is_empty {
                            fields.push(&path, "", parent)?;
                            path.truncate(mark);
                        } else {
                            next_serial += 1;
                            open.push(mark, next_serial);
                            text = LeafText::Empty;
                            has_children = false;
                        }
                    }
                    _ => return Err(Error::Decode("content after the root element".into())),
                }
            }
            Event::End(_) => {
                // Names were checked by quick-xml (check_end_names).
                match open.pop() {
                    Some(mark) => {
                        if !has_children {
                            let parent = open.parent();
                            fields.push(&path, text.as_str(), parent)?;
                        }
                        text = LeafText::Empty;
                        path.truncate(mark);
                        // Whatever encloses the element we just closed has children.
                        has_children = true;
                    }
                    None => state = 2,
                }
            }
            Event::Text(t) => {
                if state == 1 {
                    // Whitespace between elements is read too: unknown entities are refused there.
                    let piece = text_of(xml, &t)?;
                    if !open.is_empty() && !has_children {
                        text.push(piece);
                    }
                } else if !t.iter().all(u8::is_ascii_whitespace) {
                    return Err(Error::Decode("text outside the root element".into()));
                }
            }
            Event::CData(c) => {
                if state != 1 {
                    return Err(Error::Decode("text outside the root element".into()));
                }
                if !open.is_empty() && !has_children {
                    text.push(in_doc(xml, &c)?);
                }
            }
            Event::Eof => break,
        }
        seen_anything = true;
    }

    match state {
        2 => Ok(fields),
        0 => Err(Error::Decode("no <xml> root element".into())),
        _ => Err(Error::Decode("malformed xml: unclosed element".into())),
    }
}

/// Writes `s` as CDATA. A `]]>` inside `s` is split across two sections
/// (`]]]]><![CDATA[>`), so the content can never close the section and inject markup.
pub fn write_cdata(out: &mut String, s: &str) {
    out.push_str("<![CDATA[");
    let mut rest = s;
    // Almost no value holds a `]` at all: one byte scan spares them the substring search.
    if rest.as_bytes().contains(&b']') {
        while let Some(i) = rest.find("]]>") {
            out.push_str(&rest[..i + 2]);
            out.push_str("]]><![CDATA[");
            rest = &rest[i + 2..];
        }
    }
    out.push_str(rest);
    out.push_str("]]>");
}

/// Writes `s` as escaped character data (`&`, `<`, `>`).
pub fn write_escaped(out: &mut String, s: &str) {
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&s[last..]);
}

/// Builds a WeChat XML document from typed values (被动回复 and the encrypted envelope).
///
/// Element names are `&'static str` chosen by this crate; every value goes through
/// [`write_cdata`] or is a number, so user text can never become markup.
#[derive(Debug)]
pub struct XmlWriter {
    out: String,
}

impl XmlWriter {
    /// Starts a document with the `<xml>` root open.
    pub fn new() -> Self {
        Self::with_capacity(256)
    }

    /// [`XmlWriter::new`] for a document of about `bytes` (it grows past them if need be).
    pub fn with_capacity(bytes: usize) -> Self {
        let mut out = String::with_capacity(bytes);
        out.push_str("<xml>");
        XmlWriter { out }
    }

    /// `<name><![CDATA[value]]></name>`
    pub fn cdata(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.open(name);
        write_cdata(&mut self.out, value);
        self.close(name)
    }

    /// `<name>value</name>` with the value escaped (used for `TimeStamp`, numeric by contract).
    pub fn text(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.open(name);
        write_escaped(&mut self.out, value);
        self.close(name)
    }

    /// `<name>123</name>`
    pub fn number(&mut self, name: &'static str, value: i64) -> &mut Self {
        use std::fmt::Write;
        self.open(name);
        let _ = write!(self.out, "{value}");
        self.close(name)
    }

    /// `<name>`: opens a group element; close it with [`XmlWriter::close`].
    pub fn open(&mut self, name: &'static str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// `</name>`
    pub fn close(&mut self, name: &'static str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// Closes the root and returns the document.
    pub fn finish(mut self) -> String {
        self.out.push_str("</xml>");
        self.out
    }
}

impl Default for XmlWriter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_msg(r: Result<XmlFields>) -> String {
        match r {
            Err(Error::Decode(m)) => m,
            other => panic!("expected Error::Decode, got {other:?}"),
        }
    }

    #[test]
    fn reads_cdata_and_text_leaves() {
        let f = parse_flat(
            "<xml><ToUserName><![CDATA[toUser]]></ToUserName>\n <CreateTime>1348831860</CreateTime>\
             <Content><![CDATA[a <b> & c]]></Content></xml>",
        )
        .unwrap();
        assert_eq!(f.get("ToUserName"), Some("toUser"));
        assert_eq!(f.get("CreateTime"), Some("1348831860"));
        assert_eq!(f.get("Content"), Some("a <b> & c"));
        assert_eq!(f.get("Missing"), None);
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn unescapes_predefined_and_numeric_references() {
        let f = parse_flat("<xml><A>&lt;&gt;&amp;&apos;&quot;&#20826;&#x515A;</A></xml>").unwrap();
        assert_eq!(f.get("A"), Some("<>&'\"党党"));
    }

    #[test]
    fn mixes_text_and_cdata_in_one_leaf() {
        let f = parse_flat("<xml><A>x &amp; <![CDATA[<y>]]> z</A></xml>").unwrap();
        assert_eq!(f.get("A"), Some("x & <y> z"));
    }

    #[test]
    fn keeps_cdata_whitespace_verbatim_and_empty_elements() {
        let f = parse_flat("<xml><Label><![CDATA[ 广州 ]]></Label><Poiname><![CDATA[]]></Poiname><E/><F></F></xml>")
            .unwrap();
        assert_eq!(f.get("Label"), Some(" 广州 "));
        assert_eq!(f.get("Poiname"), Some(""));
        assert_eq!(f.get("E"), Some(""));
        assert_eq!(f.get("F"), Some(""));
        assert!(f.contains("E"));
    }

    #[test]
    fn nested_paths_and_repeated_groups_keep_order() {
        let f = parse_flat(
            "<xml><SendPicsInfo><Count>3</Count><PicList>\
             <item><PicMd5Sum><![CDATA[a]]></PicMd5Sum></item>\
             <item><PicMd5Sum><![CDATA[b]]></PicMd5Sum></item>\
             <item><PicMd5Sum><![CDATA[c]]></PicMd5Sum></item>\
             </PicList></SendPicsInfo></xml>",
        )
        .unwrap();
        assert_eq!(f.get("SendPicsInfo.Count"), Some("3"));
        let md5s: Vec<&str> = f.get_all("SendPicsInfo.PicList.item.PicMd5Sum").collect();
        assert_eq!(md5s, ["a", "b", "c"]);
        // Group elements themselves are not leaves.
        assert_eq!(f.get("SendPicsInfo"), None);
        assert_eq!(f.get("SendPicsInfo.PicList.item"), None);
    }

    #[test]
    fn groups_separate_repeated_elements_even_with_missing_children() {
        let f = parse_flat(
            "<xml><E><List><T>a</T><S>accept</S><P>0</P></List>\
             <List><T>b</T><S>reject</S></List>\
             <List><T>c</T><P>1</P><Deep><X>ignored</X></Deep></List></E>\
             <Other><T>z</T></Other></xml>",
        )
        .unwrap();
        let groups = f.groups("E.List");
        assert_eq!(groups.len(), 3);
        assert_eq!(
            (groups[0].get("T"), groups[0].get("S"), groups[0].get("P")),
            (Some("a"), Some("accept"), Some("0"))
        );
        assert_eq!(
            (groups[1].get("T"), groups[1].get("S"), groups[1].get("P")),
            (Some("b"), Some("reject"), None)
        );
        assert_eq!(
            (groups[2].get("T"), groups[2].get("S"), groups[2].get("P")),
            (Some("c"), None, Some("1"))
        );
        assert_eq!(
            groups[2].iter().count(),
            2,
            "grandchildren are not direct children"
        );
        assert!(f.groups("Nope").is_empty());
        // Adjacent groups written with empty elements are still told apart.
        let f = parse_flat("<xml><L><T>a</T><U/></L><L><T>b</T><U/></L></xml>").unwrap();
        let g = f.groups("L");
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].get("T"), g[0].get("U"), g[1].get("T")),
            (Some("a"), Some(""), Some("b"))
        );
    }

    #[test]
    fn accepts_xml_declaration_and_comments() {
        let f = parse_flat(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml><!-- c --><A>1</A></xml>\n",
        )
        .unwrap();
        assert_eq!(f.get("A"), Some("1"));
    }

    #[test]
    fn rejects_doctype() {
        let m = decode_msg(parse_flat("<!DOCTYPE xml><xml><A>1</A></xml>"));
        assert_eq!(m, DOCTYPE_NOT_ALLOWED);
    }

    #[test]
    fn rejects_external_entity_xxe() {
        let xml =
            "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\
                   <xml><Content>&xxe;</Content></xml>";
        assert_eq!(decode_msg(parse_flat(xml)), DOCTYPE_NOT_ALLOWED);
    }

    #[test]
    fn rejects_billion_laughs() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol9 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<xml><Content>&lol9;</Content></xml>"#;
        assert_eq!(decode_msg(parse_flat(xml)), DOCTYPE_NOT_ALLOWED);
    }

    #[test]
    fn rejects_entity_declaration_without_doctype() {
        assert!(matches!(
            parse_flat("<!ENTITY a \"b\"><xml><A>&a;</A></xml>"),
            Err(Error::Decode(_))
        ));
    }

    #[test]
    fn rejects_processing_instructions() {
        let m = decode_msg(parse_flat("<xml><?php evil() ?><A>1</A></xml>"));
        assert_eq!(m, DOCTYPE_NOT_ALLOWED);
        let m = decode_msg(parse_flat(
            "<?xml-stylesheet href=\"x\"?><xml><A>1</A></xml>",
        ));
        assert_eq!(m, DOCTYPE_NOT_ALLOWED);
        // A declaration anywhere but first is a processing instruction in disguise.
        let m = decode_msg(parse_flat("<!-- c --><?xml version=\"1.0\"?><xml/>"));
        assert_eq!(m, DOCTYPE_NOT_ALLOWED);
    }

    #[test]
    fn text_found_in_the_document_is_borrowed_and_other_bytes_are_checked() {
        let doc = "<xml><A>党建</A></xml>";
        let inner = &doc.as_bytes()[8..14];
        assert!(matches!(in_doc(doc, inner), Ok(Cow::Borrowed("党建"))));
        // Not a slice of `doc`: checked and copied, never trusted.
        let elsewhere = "党建".as_bytes().to_vec();
        assert!(matches!(in_doc(doc, &elsewhere), Ok(Cow::Owned(s)) if s == "党建"));
        assert!(in_doc(doc, &[0xe5, 0x85]).is_err(), "half a character");
        assert!(matches!(text_of(doc, b"a &amp; b"), Ok(Cow::Owned(s)) if s == "a & b"));
    }

    #[test]
    fn rejects_unknown_entities() {
        decode_msg(parse_flat("<xml><A>&nbsp;</A></xml>"));
        decode_msg(parse_flat("<xml><A>&lol9;</A></xml>"));
        // Also in inter-element whitespace and groups.
        decode_msg(parse_flat("<xml><G>&x;<A>1</A></G></xml>"));
    }

    #[test]
    fn rejects_malformed_documents() {
        for bad in [
            "",
            "   ",
            "not xml",
            "<xml>",
            "<xml><A>1</xml>",
            "<xml><A>1</B></xml>",
            "<xml><A>1</A>",
            "<xml><A>1</A></xml><xml></xml>",
            "<xml><A>1</A></xml>trailing",
            "leading<xml><A>1</A></xml>",
            "<root><A>1</A></root>",
            "<xml><A><![CDATA[unterminated</A></xml>",
            "<xml><A attr=></A></xml>",
            "</xml>",
        ] {
            assert!(
                matches!(parse_flat(bad), Err(Error::Decode(_))),
                "accepted {bad:?}"
            );
        }
    }

    #[test]
    fn rejects_deep_nesting() {
        let depth = 100;
        let xml = format!(
            "<xml>{}x{}</xml>",
            "<a>".repeat(depth),
            "</a>".repeat(depth)
        );
        assert_eq!(decode_msg(parse_flat(&xml)), "xml nested too deeply");
        let ok = format!(
            "<xml>{}x{}</xml>",
            "<a>".repeat(MAX_DEPTH),
            "</a>".repeat(MAX_DEPTH)
        );
        let f = parse_flat(&ok).unwrap();
        assert_eq!(f.get(&vec!["a"; MAX_DEPTH].join(".")), Some("x"));
    }

    #[test]
    fn cdata_escapes_terminator() {
        let mut out = String::new();
        write_cdata(&mut out, "a]]>b]]>");
        assert_eq!(out, "<![CDATA[a]]]]><![CDATA[>b]]]]><![CDATA[>]]>");
    }

    #[test]
    fn writer_output_round_trips_hostile_text() {
        for s in [
            "]]>",
            "a]]>b",
            "]]]]>>",
            "</Content><MsgType>news</MsgType>",
            "<![CDATA[x]]>",
            "&amp;",
            "]",
            "",
        ] {
            let mut w = XmlWriter::new();
            w.cdata("Content", s).text("TimeStamp", s).number("N", -5);
            let xml = w.finish();
            let f = parse_flat(&xml).unwrap();
            assert_eq!(f.get("Content"), Some(s), "{xml}");
            assert_eq!(f.get("TimeStamp"), Some(s), "{xml}");
            assert_eq!(f.get("N"), Some("-5"));
            assert_eq!(f.len(), 3, "{xml}");
        }
    }

    #[test]
    fn debug_lists_pairs() {
        let f = parse_flat("<xml><A>1</A></xml>").unwrap();
        assert_eq!(format!("{f:?}"), "[(\"A\", \"1\")]");
    }
}
