//! Lists page by page: a service cuts the page a [`ListRequest`] asks for out of its
//! list with [`page`]; the asker sends each page's `next` back as `after`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ListRequest;
use crate::command::{Rejection, RejectionCode};

/// Where a page ended; opaque to the asker, who sends it back as `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Cursor(pub String);

/// One page of a list, in the list's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Page<T> {
    pub rows: Vec<T>,
    /// Where to go on from (as `after`); absent on the last page.
    pub next: Option<Cursor>,
}

/// The rows of a page when the request names no `limit`.
pub const DEFAULT_PAGE_ROWS: u32 = 500;
/// The most rows a page holds.
pub const MAX_PAGE_ROWS: u32 = 5_000;
/// About the most JSON a page's rows take (a page always holds at least one row): half
/// of NATS's 1 MB payload limit.
pub const MAX_PAGE_BYTES: usize = 512 * 1024;

impl<F> ListRequest<F> {
    /// The most rows its page holds: its `limit`, within 1 and [`MAX_PAGE_ROWS`].
    pub fn page_rows(&self) -> usize {
        self.limit
            .unwrap_or(DEFAULT_PAGE_ROWS)
            .clamp(1, MAX_PAGE_ROWS) as usize
    }
}

/// Cuts the page `request` asks for out of `rows` — the whole list, in its stable order
/// — where `key` names each row uniquely: the rows after the one `after` names, at most
/// `limit` of them and about [`MAX_PAGE_BYTES`]. A cursor naming no row (one no longer
/// listed) is a conflict: list again from the start.
pub fn page<T: Serialize, F>(
    rows: impl IntoIterator<Item = T>,
    request: &ListRequest<F>,
    key: impl Fn(&T) -> String,
) -> Result<Page<T>, Rejection> {
    let limit = request.page_rows();
    let mut rows = rows.into_iter().peekable();
    if let Some(after) = &request.after {
        if !rows.by_ref().any(|row| key(&row) == after.0) {
            return Err(Rejection::new(
                RejectionCode::Conflict,
                "the row this page was to follow is no longer listed: list again from the start",
            ));
        }
    }
    let mut page = Vec::new();
    let mut bytes = 0;
    while let Some(row) =
        rows.next_if(|row| page.is_empty() || bytes + json_len(row) <= MAX_PAGE_BYTES)
    {
        bytes += json_len(&row);
        page.push(row);
        if page.len() == limit {
            break;
        }
    }
    let next = match rows.peek() {
        Some(_) => page.last().map(|last| Cursor(key(last))),
        None => None,
    };
    Ok(Page { rows: page, next })
}

/// The length of a row's JSON and the comma after it.
fn json_len<T: Serialize>(row: &T) -> usize {
    serde_json::to_vec(row).map_or(0, |json| json.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{encode_reply, TenantFilter};

    #[derive(Debug, Serialize)]
    struct Row {
        id: u32,
        text: String,
    }

    fn request(limit: Option<u32>, after: Option<Cursor>) -> ListRequest<TenantFilter> {
        ListRequest {
            filter: TenantFilter::default(),
            limit,
            after,
        }
    }

    fn follow(rows: &[u32], text: usize, limit: Option<u32>) -> Vec<Vec<u32>> {
        let rows = || {
            rows.iter().map(|&id| Row {
                id,
                text: "x".repeat(text),
            })
        };
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let page = page(rows(), &request(limit, after), |row| row.id.to_string()).unwrap();
            let reply = encode_reply::<&Page<Row>>(Ok(&page));
            assert!(reply.len() < 1024 * 1024, "a page of {} bytes", reply.len());
            pages.push(page.rows.iter().map(|row| row.id).collect());
            match page.next {
                Some(next) => after = Some(next),
                None => return pages,
            }
        }
    }

    #[test]
    fn ten_thousand_rows_come_in_pages_that_fit_a_nats_message() {
        let ids: Vec<u32> = (0..10_000).collect();
        let pages = follow(&ids, 300, Some(MAX_PAGE_ROWS));
        assert!(pages.len() > 2, "cut by size: {} pages", pages.len());
        assert_eq!(pages.concat(), ids, "every row once, in order");

        let by_count = follow(&ids, 10, None);
        assert_eq!(by_count.len(), 20);
        assert!(by_count
            .iter()
            .all(|p| p.len() == DEFAULT_PAGE_ROWS as usize));
        assert_eq!(by_count.concat(), ids);
    }

    #[test]
    fn small_lists_are_one_page_and_a_huge_row_still_comes() {
        assert_eq!(follow(&[], 1, None), vec![Vec::<u32>::new()]);
        assert_eq!(follow(&[1, 2, 3], 1, Some(3)), vec![vec![1, 2, 3]]);
        assert_eq!(follow(&[1, 2, 3], 1, Some(2)), vec![vec![1, 2], vec![3]]);
        assert_eq!(
            follow(&[1, 2], MAX_PAGE_BYTES, None),
            vec![vec![1], vec![2]]
        );
    }

    #[test]
    fn a_cursor_naming_no_row_is_a_conflict() {
        let rows = [Row {
            id: 1,
            text: String::new(),
        }];
        let gone = page(rows, &request(None, Some(Cursor("7".into()))), |row| {
            row.id.to_string()
        });
        assert_eq!(gone.unwrap_err().code, RejectionCode::Conflict);
    }
}
