//! 用户管理: 获取用户列表, 批量获取用户基本信息, 用户标签管理.

use serde::{Deserialize, Serialize};

use super::{api, Call, Client, Ignored};
use crate::Result;

/// A page of OpenIDs, from 获取用户列表 (`user/get`) or 获取标签下粉丝列表 (`user/tag/get`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct UserList {
    /// All followers (`user/get` only; 0 for `user/tag/get`).
    #[serde(default)]
    pub total: u64,
    /// OpenIDs in this page.
    #[serde(default)]
    pub count: u64,
    /// Absent when the page is empty.
    #[serde(default)]
    pub data: Option<UserListData>,
    /// Pass it to get the next page; empty (or the last OpenID with an empty page next) at the end.
    #[serde(default)]
    pub next_openid: String,
}

/// The `data` object of a [`UserList`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct UserListData {
    #[serde(default)]
    pub openid: Vec<String>,
}

impl UserList {
    /// The OpenIDs of this page.
    pub fn openids(&self) -> &[String] {
        self.data
            .as_ref()
            .map(|d| d.openid.as_slice())
            .unwrap_or(&[])
    }

    /// Whether there is no page after this one.
    pub fn is_last(&self) -> bool {
        self.count == 0 || self.next_openid.is_empty()
    }
}

/// Language of the returned info (`lang`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lang {
    #[default]
    #[serde(rename = "zh_CN")]
    ZhCn,
    #[serde(rename = "zh_TW")]
    ZhTw,
    #[serde(rename = "en")]
    En,
}

/// 用户基本信息 as returned since 2021-12-27: no nickname or avatar. An unsubscribed user has
/// `subscribe == 0` and only `openid` (and `unionid`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// 1 when following, 0 when not.
    pub subscribe: i32,
    pub openid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Unix seconds of the (last) follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groupid: Option<i64>,
    #[serde(default)]
    pub tagid_list: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_scene: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_scene: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_scene_str: Option<String>,
}

impl UserInfo {
    /// Whether the user follows the account (`subscribe == 1`).
    pub fn is_subscribed(&self) -> bool {
        self.subscribe == 1
    }
}

/// A tag as created (创建标签).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub id: i64,
    pub name: String,
}

/// A tag as listed (获取公众号已创建的标签), with its follower count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagInfo {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub count: u64,
}

#[derive(Serialize)]
struct BatchGetRequest<'a> {
    user_list: Vec<BatchGetItem<'a>>,
}

#[derive(Serialize)]
struct BatchGetItem<'a> {
    openid: &'a str,
    lang: Lang,
}

#[derive(Deserialize)]
struct BatchGetResponse {
    #[serde(default)]
    user_info_list: Vec<UserInfo>,
}

#[derive(Serialize)]
struct TagName<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct CreateTagRequest<'a> {
    tag: TagName<'a>,
}

#[derive(Deserialize)]
struct CreateTagResponse {
    tag: Tag,
}

#[derive(Deserialize)]
struct TagsResponse {
    #[serde(default)]
    tags: Vec<TagInfo>,
}

#[derive(Serialize)]
struct TagUsersRequest<'a> {
    tagid: i64,
    next_openid: &'a str,
}

#[derive(Serialize)]
struct BatchTaggingRequest<'a> {
    openid_list: &'a [String],
    tagid: i64,
}

/// Most OpenIDs one 批量获取用户基本信息 call takes.
pub const BATCHGET_MAX: usize = 100;

impl Client {
    /// 获取用户列表 (`GET cgi-bin/user/get`): up to 10,000 OpenIDs after `next_openid` (None: from
    /// the start). Page until [`UserList::is_last`].
    pub async fn user_get(&self, next_openid: Option<&str>) -> Result<UserList> {
        let mut call = Call::get(api::USER_GET);
        if let Some(next) = next_openid.filter(|s| !s.is_empty()) {
            call = call.query("next_openid", next);
        }
        self.call_json(call).await
    }

    /// 获取用户基本信息 (`GET cgi-bin/user/info`): one user's info. `unionid` is present only when
    /// the account is bound to an open-platform account (开放平台) — the only way to learn which
    /// mini-program user a follower is. An unfollowed user answers `subscribe: 0`.
    pub async fn user_info(&self, openid: &str, lang: Lang) -> Result<UserInfo> {
        let lang = match lang {
            Lang::ZhCn => "zh_CN",
            Lang::ZhTw => "zh_TW",
            Lang::En => "en",
        };
        let call = Call::get(api::USER_INFO)
            .query("openid", openid)
            .query("lang", lang);
        self.call_json(call).await
    }

    /// 批量获取用户基本信息 (`POST cgi-bin/user/info/batchget`), at most 100 OpenIDs.
    pub async fn user_info_batchget(
        &self,
        openids: &[String],
        lang: Lang,
    ) -> Result<Vec<UserInfo>> {
        if openids.len() > BATCHGET_MAX {
            return Err(crate::Error::Config(format!(
                "user/info/batchget takes at most {BATCHGET_MAX} openids, got {}",
                openids.len()
            )));
        }
        let body = BatchGetRequest {
            user_list: openids
                .iter()
                .map(|o| BatchGetItem { openid: o, lang })
                .collect(),
        };
        let resp: BatchGetResponse = self
            .call_json(Call::post(api::USER_INFO_BATCHGET, &body)?.idempotent())
            .await?;
        Ok(resp.user_info_list)
    }

    /// 创建标签 (`POST cgi-bin/tags/create`). A duplicate name is `Error::Api { errcode: 45157 }`.
    pub async fn tags_create(&self, name: &str) -> Result<Tag> {
        let body = CreateTagRequest {
            tag: TagName { name },
        };
        let resp: CreateTagResponse = self.call_json(Call::post(api::TAGS_CREATE, &body)?).await?;
        Ok(resp.tag)
    }

    /// 获取公众号已创建的标签 (`GET cgi-bin/tags/get`).
    pub async fn tags_get(&self) -> Result<Vec<TagInfo>> {
        let resp: TagsResponse = self.call_json(Call::get(api::TAGS_GET)).await?;
        Ok(resp.tags)
    }

    /// 获取标签下粉丝列表 (`POST cgi-bin/user/tag/get`): up to 10,000 OpenIDs after `next_openid`.
    pub async fn user_tag_get(&self, tagid: i64, next_openid: Option<&str>) -> Result<UserList> {
        let body = TagUsersRequest {
            tagid,
            next_openid: next_openid.unwrap_or(""),
        };
        self.call_json(Call::post(api::USER_TAG_GET, &body)?.idempotent())
            .await
    }

    /// 批量为用户打标签 (`POST cgi-bin/tags/members/batchtagging`), at most 50 OpenIDs.
    pub async fn tags_members_batchtagging(&self, tagid: i64, openids: &[String]) -> Result<()> {
        let body = BatchTaggingRequest {
            openid_list: openids,
            tagid,
        };
        let _: Ignored = self
            .call_json(Call::post(api::TAGS_MEMBERS_BATCHTAGGING, &body)?.idempotent())
            .await?;
        Ok(())
    }
}
