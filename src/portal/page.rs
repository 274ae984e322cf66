//! The portal's pages. Lists are newest first, 20 to a page; article titles link to the existing
//! public article page (`/articles/{id}`).

use axum::{extract::State, response::Response};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    articles::{banner_store, store as articles},
    http::{console::pager, page_of, public, AppQuery, Id},
    platform::{
        db::Page,
        error::{AppError, AppResult},
        pages,
        time::local_minute,
    },
    portal::NOTICE_TAG,
    submissions::store as submissions,
};

const PAGE_SIZE: i64 = 20;
/// Items per category (and notices, board posts) on the index.
const INDEX_ITEMS: i64 = 5;

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub page: Option<String>,
}

#[derive(Serialize)]
struct Item {
    id: i64,
    title: String,
    published: Option<String>,
}

#[derive(Serialize)]
struct Banner {
    title: String,
    image_url: String,
    /// The article page or an http(s) link; None for a mini-program path (not a web link).
    href: Option<String>,
}

/// A board post as the public sees it: the text and the answer, never who wrote it.
#[derive(Serialize)]
struct Post {
    content: String,
    created: String,
    answer: Option<String>,
    answered: Option<String>,
}

#[derive(Serialize)]
struct Section {
    id: i64,
    name: String,
    items: Vec<Item>,
}

fn items(list: Vec<articles::ArticleListItem>) -> Vec<Item> {
    list.into_iter()
        .map(|a| Item {
            id: a.id,
            title: a.title,
            published: a.published_at.map(local_minute),
        })
        .collect()
}

fn posts(list: Vec<submissions::BoardPost>) -> Vec<Post> {
    list.into_iter()
        .map(|p| Post {
            content: p.content,
            created: local_minute(p.created_at),
            answer: p.answer,
            answered: p.answered_at.map(local_minute),
        })
        .collect()
}

fn first(n: i64) -> Page {
    Page { number: 1, size: n }
}

fn render<C: Serialize>(name: &str, ctx: C) -> AppResult<Response> {
    let html = pages::render(name, ctx).map_err(|e| AppError::Internal(e.into()))?;
    Ok(public::page(html))
}

fn page_of_query(q: &PageQuery) -> AppResult<Page> {
    page_of(&q.page, &None, PAGE_SIZE)
}

/// `GET /portal`: banners, 党务公开, each non-empty category's newest, the board's newest.
pub async fn index(State(st): State<AppState>) -> AppResult<Response> {
    let banners: Vec<Banner> = banner_store::list_valid(&st.db, st.clock.unix_ms())
        .await?
        .into_iter()
        .map(|b| Banner {
            href: match (b.article_id, b.link_url) {
                (Some(id), _) => Some(format!("/articles/{id}")),
                (None, Some(u)) if u.starts_with("https://") || u.starts_with("http://") => Some(u),
                _ => None,
            },
            title: b.title,
            image_url: b.image_url,
        })
        .collect();
    let mut sections = Vec::new();
    for c in articles::list_categories(&st.db).await? {
        if c.published_count == 0 {
            continue;
        }
        let (list, _) = articles::list_published(&st.db, Some(c.id), first(INDEX_ITEMS)).await?;
        sections.push(Section {
            id: c.id,
            name: c.name,
            items: items(list),
        });
    }
    let (notices, _) =
        articles::list_published_tagged(&st.db, NOTICE_TAG, first(INDEX_ITEMS)).await?;
    let (board, _) = submissions::list_posts(&st.db, Some("approved"), 3, 0).await?;
    render(
        "portal/index.html",
        minijinja::context! {
            nav => "index", banners, sections, notices => items(notices), board => posts(board),
        },
    )
}

/// `GET /portal/categories/{id}?page=`: one category's published articles.
pub async fn category(
    State(st): State<AppState>,
    Id(id): Id,
    AppQuery(q): AppQuery<PageQuery>,
) -> AppResult<Response> {
    let c = articles::category_by_id(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("category".into()))?;
    let page = page_of_query(&q)?;
    let (list, total) = articles::list_published(&st.db, Some(c.id), page).await?;
    render(
        "portal/list.html",
        minijinja::context! {
            nav => "category", title => c.name, items => items(list), pager => pager(page, total, &[]),
        },
    )
}

/// `GET /portal/notices?page=`: 党务公开.
pub async fn notices(
    State(st): State<AppState>,
    AppQuery(q): AppQuery<PageQuery>,
) -> AppResult<Response> {
    let page = page_of_query(&q)?;
    let (list, total) = articles::list_published_tagged(&st.db, NOTICE_TAG, page).await?;
    render(
        "portal/list.html",
        minijinja::context! {
            nav => "notices", title => NOTICE_TAG, items => items(list), pager => pager(page, total, &[]),
        },
    )
}

/// `GET /portal/board?page=`: approved posts with their answers.
pub async fn board(
    State(st): State<AppState>,
    AppQuery(q): AppQuery<PageQuery>,
) -> AppResult<Response> {
    let page = page_of_query(&q)?;
    let (list, total) =
        submissions::list_posts(&st.db, Some("approved"), page.size, page.offset()).await?;
    render(
        "portal/board.html",
        minijinja::context! { nav => "board", posts => posts(list), pager => pager(page, total, &[]) },
    )
}
