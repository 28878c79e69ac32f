//! Just enough of POSIX shell syntax to judge a bash command under the `auto` policy:
//! split it into simple commands (on `;`, `&&`, `||`, `|`, `&`, newlines), unquote its
//! words and collect its redirections. Anything this cannot judge with confidence —
//! command or process substitution (`$(…)`, `` `…` ``, `<(…)`), subshells and groups,
//! here-documents, unterminated quotes — makes [`parse`] answer `None`, and the
//! command is then asked about, never allowed.

/// One word after quote removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub text: String,
    /// It holds an unquoted or double-quoted `$` expansion, or starts with an unquoted
    /// `~`: its value is not known from the text.
    pub expands: bool,
    /// Some part of it was quoted (so `NAME=value` is not an assignment, `{` not a group).
    pub quoted: bool,
}

/// A redirection: its operator and, when it names a file, its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redirect {
    pub op: String,
    /// `None` for descriptor duplication (`2>&1`, `>&-`).
    pub target: Option<Word>,
}

impl Redirect {
    /// Whether the redirection writes its target.
    pub fn writes(&self) -> bool {
        self.op.contains('>')
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Simple {
    pub words: Vec<Word>,
    pub redirects: Vec<Redirect>,
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

/// Splits `cmd` into simple commands, or `None` when the command uses syntax this
/// module does not judge.
pub(crate) fn parse(cmd: &str) -> Option<Vec<Simple>> {
    let mut lx = Lexer {
        chars: cmd.chars().peekable(),
    };
    let mut out = Vec::new();
    let mut cur = Simple::default();
    loop {
        lx.skip_blanks();
        let Some(&c) = lx.chars.peek() else {
            break;
        };
        match c {
            '\n' | ';' | '&' | '|' => {
                lx.chars.next();
                if c == '&' && lx.chars.peek() == Some(&'>') {
                    // `&>` / `&>>`: both streams to a file.
                    lx.chars.next();
                    let mut op = "&>".to_string();
                    if lx.chars.peek() == Some(&'>') {
                        lx.chars.next();
                        op.push('>');
                    }
                    let target = lx.redirect_target()?;
                    cur.redirects.push(Redirect {
                        op,
                        target: Some(target),
                    });
                    continue;
                }
                if c == ';' && lx.chars.peek() == Some(&';') {
                    return None; // `;;` belongs to `case`
                }
                // `&&`, `||`, `|&` are separators as well.
                if (c == '&' && lx.chars.peek() == Some(&'&'))
                    || (c == '|' && matches!(lx.chars.peek(), Some('|') | Some('&')))
                {
                    lx.chars.next();
                }
                out.push(std::mem::take(&mut cur));
            }
            '(' | ')' | '`' => return None,
            '#' => {
                // A comment runs to the end of the line.
                while lx.chars.peek().is_some_and(|c| *c != '\n') {
                    lx.chars.next();
                }
            }
            '<' | '>' => {
                let r = lx.redirect(String::new())?;
                cur.redirects.push(r);
            }
            _ => {
                let w = lx.word()?;
                // `2>file`: a word of digits right before a redirection is its fd.
                if !w.quoted
                    && !w.text.is_empty()
                    && w.text.chars().all(|c| c.is_ascii_digit())
                    && matches!(lx.chars.peek(), Some('<') | Some('>'))
                {
                    let r = lx.redirect(w.text)?;
                    cur.redirects.push(r);
                    continue;
                }
                if !w.quoted && matches!(w.text.as_str(), "{" | "}" | "!" | "[[" | "]]") {
                    return None;
                }
                cur.words.push(w);
            }
        }
    }
    out.push(cur);
    out.retain(|s| !s.words.is_empty() || !s.redirects.is_empty());
    Some(out)
}

impl Lexer<'_> {
    fn skip_blanks(&mut self) {
        while self.chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            self.chars.next();
        }
    }

    /// A redirection starting at `<` or `>` (`fd` already read).
    fn redirect(&mut self, fd: String) -> Option<Redirect> {
        let first = self.chars.next()?;
        let mut op = fd;
        op.push(first);
        match (first, self.chars.peek().copied()) {
            ('<', Some('(')) | ('>', Some('(')) => return None, // process substitution
            ('<', Some('<')) => {
                self.chars.next();
                if self.chars.peek() == Some(&'<') {
                    // `<<<` here-string: reads a word.
                    self.chars.next();
                    op.push_str("<<");
                    self.redirect_target()?;
                    return Some(Redirect { op, target: None });
                }
                return None; // here-document
            }
            ('>', Some('>')) | ('>', Some('|')) | ('<', Some('>')) => {
                op.push(self.chars.next()?);
            }
            ('>', Some('&')) | ('<', Some('&')) => {
                op.push(self.chars.next()?);
                let w = self.redirect_target()?;
                let dup = w.text == "-" || w.text.chars().all(|c| c.is_ascii_digit());
                return Some(Redirect {
                    op,
                    target: if dup && !w.text.is_empty() {
                        None
                    } else {
                        Some(w)
                    },
                });
            }
            _ => {}
        }
        let target = self.redirect_target()?;
        Some(Redirect {
            op,
            target: Some(target),
        })
    }

    fn redirect_target(&mut self) -> Option<Word> {
        self.skip_blanks();
        match self.chars.peek() {
            None | Some('\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')') => None,
            _ => self.word(),
        }
    }

    /// One word, up to an unquoted blank or operator.
    fn word(&mut self) -> Option<Word> {
        let mut w = Word {
            text: String::new(),
            expands: false,
            quoted: false,
        };
        let mut first = true;
        while let Some(&c) = self.chars.peek() {
            match c {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' => break,
                '(' | ')' | '`' => return None,
                '\'' => {
                    self.chars.next();
                    w.quoted = true;
                    loop {
                        match self.chars.next()? {
                            '\'' => break,
                            ch => w.text.push(ch),
                        }
                    }
                }
                '"' => {
                    self.chars.next();
                    w.quoted = true;
                    loop {
                        match self.chars.next()? {
                            '"' => break,
                            '`' => return None,
                            '$' => {
                                if self.chars.peek() == Some(&'(') {
                                    return None;
                                }
                                w.expands = true;
                                w.text.push('$');
                            }
                            '\\' => {
                                let n = self.chars.next()?;
                                if !matches!(n, '$' | '`' | '"' | '\\' | '\n') {
                                    w.text.push('\\');
                                }
                                if n != '\n' {
                                    w.text.push(n);
                                }
                            }
                            ch => w.text.push(ch),
                        }
                    }
                }
                '\\' => {
                    self.chars.next();
                    w.quoted = true;
                    match self.chars.next() {
                        Some('\n') | None => {}
                        Some(n) => w.text.push(n),
                    }
                }
                '$' => {
                    self.chars.next();
                    if self.chars.peek() == Some(&'(') {
                        return None;
                    }
                    w.expands = true;
                    w.text.push('$');
                }
                '~' if first => {
                    self.chars.next();
                    w.expands = true;
                    w.text.push('~');
                }
                _ => {
                    self.chars.next();
                    w.text.push(c);
                }
            }
            first = false;
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(cmd: &str) -> Vec<Vec<String>> {
        parse(cmd)
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.words.into_iter().map(|w| w.text).collect())
            .collect()
    }

    #[test]
    fn splits_on_separators_outside_quotes() {
        assert_eq!(
            words("ls -la && cat 'a;b' | wc -l; echo \"x && y\" || true & pwd"),
            vec![
                vec!["ls", "-la"],
                vec!["cat", "a;b"],
                vec!["wc", "-l"],
                vec!["echo", "x && y"],
                vec!["true"],
                vec!["pwd"],
            ]
        );
        assert_eq!(
            words("a\nb # comment; rm -rf /\n c"),
            vec![vec!["a"], vec!["b"], vec!["c"]]
        );
        assert_eq!(words("echo a\\ b\\;c"), vec![vec!["echo", "a b;c"]]);
    }

    #[test]
    fn redirections_are_collected() {
        let s = parse("echo hi > out.txt 2>&1 >> /tmp/log 2> err < in &> both").unwrap();
        assert_eq!(s.len(), 1);
        let r: Vec<(String, Option<String>)> = s[0]
            .redirects
            .iter()
            .map(|r| (r.op.clone(), r.target.as_ref().map(|t| t.text.clone())))
            .collect();
        assert_eq!(
            r,
            vec![
                (">".into(), Some("out.txt".into())),
                ("2>&".into(), None),
                (">>".into(), Some("/tmp/log".into())),
                ("2>".into(), Some("err".into())),
                ("<".into(), Some("in".into())),
                ("&>".into(), Some("both".into())),
            ]
        );
        assert!(s[0].redirects[0].writes());
        assert!(!s[0].redirects[4].writes());
        assert_eq!(s[0].words.len(), 2);
        let s = parse("echo x >/etc/passwd").unwrap();
        assert_eq!(
            s[0].redirects[0].target.as_ref().map(|t| t.text.as_str()),
            Some("/etc/passwd")
        );
    }

    #[test]
    fn expansions_are_marked() {
        let s = parse("echo $HOME \"$X/y\" '$Z' ~/a b~").unwrap();
        let e: Vec<bool> = s[0].words.iter().map(|w| w.expands).collect();
        assert_eq!(e, [false, true, true, false, true, false]);
    }

    #[test]
    fn unjudgeable_syntax_is_none() {
        for cmd in [
            "echo $(rm -rf x)",
            "echo `id`",
            "echo \"$(id)\"",
            "diff <(ls a) <(ls b)",
            "(cd x; ls)",
            "{ ls; }",
            "cat <<EOF\nhi\nEOF",
            "echo 'unterminated",
            "echo \"unterminated",
            "echo x >",
            "case x in a) ;; esac",
            "tee >(cat)",
        ] {
            assert_eq!(parse(cmd), None, "{cmd}");
        }
        // Quoted, these are plain text.
        assert!(parse("echo '$(x)' '`y`' '(z)'").is_some());
    }
}
