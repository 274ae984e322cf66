//! 素材: 新增临时素材 (`media/upload`), 新增其他类型永久素材 (`material/add_material`) and 新建草稿
//! (`draft/add`).
//!
//! Why drafts for 群发 mpnews: the old 上传图文消息素材 (`media/uploadnews`) and 新增永久图文素材
//! (`material/add_news`) are being retired by WeChat; a draft's `media_id` is what
//! `message/mass/sendall` takes now. A draft's cover (`thumb_media_id`) must be a permanent image
//! ([`Client::material_add_image`]), not a temporary one.

use serde::{Deserialize, Serialize};

use super::{api, Call, Client};
use crate::Result;

/// Kind of a temporary media upload (`type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaUploadKind {
    Image,
    Thumb,
}

impl MediaUploadKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Thumb => "thumb",
        }
    }
}

/// Answer of 新增临时素材: valid for 3 days.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaUpload {
    #[serde(rename = "type")]
    pub kind: String,
    /// Thumbs answer with `thumb_media_id` instead.
    #[serde(alias = "thumb_media_id")]
    pub media_id: String,
    pub created_at: i64,
}

/// Answer of 新增其他类型永久素材.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialUpload {
    pub media_id: String,
    /// The image's URL on WeChat's servers (images only).
    #[serde(default)]
    pub url: String,
}

/// One article of 新建草稿.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftArticle {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// 摘要 (single-article drafts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// HTML; images must be WeChat URLs.
    pub content: String,
    /// 阅读原文 link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_source_url: Option<String>,
    /// A permanent image ([`Client::material_add_image`]).
    pub thumb_media_id: String,
    #[serde(default)]
    pub need_open_comment: u8,
    #[serde(default)]
    pub only_fans_can_comment: u8,
}

#[derive(Serialize)]
struct DraftAddRequest<'a> {
    articles: &'a [DraftArticle],
}

#[derive(Deserialize)]
struct DraftAddResponse {
    media_id: String,
}

impl Client {
    /// 新增临时素材 (`POST cgi-bin/media/upload?type=image|thumb`, multipart field `media`).
    /// `mime` is e.g. `image/jpeg` or `image/png`.
    pub async fn media_upload(
        &self,
        kind: MediaUploadKind,
        filename: &str,
        mime: &str,
        data: &[u8],
    ) -> Result<MediaUpload> {
        let call = Call::multipart(api::MEDIA_UPLOAD, "media", filename, mime, data)
            .query("type", kind.as_str());
        self.call_json(call).await
    }

    /// 新增其他类型永久素材 (`POST cgi-bin/material/add_material?type=image`): covers of drafts.
    pub async fn material_add_image(
        &self,
        filename: &str,
        mime: &str,
        data: &[u8],
    ) -> Result<MaterialUpload> {
        let call = Call::multipart(api::MATERIAL_ADD, "media", filename, mime, data)
            .query("type", "image");
        self.call_json(call).await
    }

    /// 新建草稿 (`POST cgi-bin/draft/add`) → `media_id`, usable as [`super::MassContent::mpnews`].
    pub async fn draft_add(&self, articles: &[DraftArticle]) -> Result<String> {
        let resp: DraftAddResponse = self
            .call_json(Call::post(api::DRAFT_ADD, &DraftAddRequest { articles })?)
            .await?;
        Ok(resp.media_id)
    }
}
