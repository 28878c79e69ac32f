//! Keyset pagination over a monotonically increasing key (a rowid, a version, a seq).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// Where a page starts: after `key` in the list's order (`forward`), or before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub forward: bool,
    pub key: i64,
}

#[derive(Debug, Clone)]
pub struct PageReq {
    pub limit: usize,
    pub order: Order,
    pub cursor: Option<Cursor>,
}

impl Default for PageReq {
    fn default() -> Self {
        PageReq {
            limit: 20,
            order: Order::Asc,
            cursor: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next: Option<Cursor>,
    pub prev: Option<Cursor>,
}

impl<T> Page<T> {
    pub fn map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            data: self.data.into_iter().map(f).collect::<Result<_, E>>()?,
            next: self.next,
            prev: self.prev,
        })
    }
}

/// SQL pieces for a page: the extra condition, the ORDER BY direction, and whether the
/// fetched rows must be reversed to come back in list order.
pub(crate) fn plan(req: &PageReq, key: &str) -> (Option<String>, &'static str, bool) {
    // `ascending` is the direction in which rows are fetched from the database.
    let list_asc = req.order == Order::Asc;
    match req.cursor {
        None => (None, if list_asc { "ASC" } else { "DESC" }, false),
        Some(c) => {
            let fetch_asc = list_asc == c.forward;
            let cond = format!("{key} {} {}", if fetch_asc { ">" } else { "<" }, c.key);
            (
                Some(cond),
                if fetch_asc { "ASC" } else { "DESC" },
                !c.forward,
            )
        }
    }
}

/// Cuts a fetch of `limit + 1` rows into a page with its cursors.
pub(crate) fn finish<T>(req: &PageReq, mut rows: Vec<(i64, T)>, reversed: bool) -> Page<T> {
    let has_more = rows.len() > req.limit;
    rows.truncate(req.limit);
    if reversed {
        rows.reverse();
    }
    let first = rows.first().map(|r| r.0);
    let last = rows.last().map(|r| r.0);
    let backward = req.cursor.is_some_and(|c| !c.forward);
    let (next, prev) = if backward {
        (
            last.map(|k| Cursor {
                forward: true,
                key: k,
            }),
            if has_more {
                first.map(|k| Cursor {
                    forward: false,
                    key: k,
                })
            } else {
                None
            },
        )
    } else {
        (
            if has_more {
                last.map(|k| Cursor {
                    forward: true,
                    key: k,
                })
            } else {
                None
            },
            if req.cursor.is_some() {
                first.map(|k| Cursor {
                    forward: false,
                    key: k,
                })
            } else {
                None
            },
        )
    };
    Page {
        data: rows.into_iter().map(|r| r.1).collect(),
        next,
        prev,
    }
}
