//! 自定义菜单: 创建 (`menu/create`), 查询 (`menu/get`), 删除 (`menu/delete`).

use serde::{Deserialize, Serialize};

use super::{api, Call, Client, Ignored};
use crate::Result;

/// A custom menu (自定义菜单): at most 3 buttons, each with at most 5 sub-buttons. WeChat checks
/// the limits; the app validates before calling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Menu {
    pub button: Vec<Button>,
}

/// One menu button. A parent has `sub_button` and no `type`; a leaf has a `type` (`click`,
/// `view`, `miniprogram`, ...) and the fields that type needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Button {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagepath: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub article_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_button: Vec<Button>,
}

impl Button {
    /// 点击推事件: WeChat sends a CLICK event with `key`.
    pub fn click(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: Some("click".into()),
            key: Some(key.into()),
            ..Self::default()
        }
    }

    /// 跳转URL.
    pub fn view(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: Some("view".into()),
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// 跳转小程序 (`url` opens on clients without mini-program support).
    pub fn miniprogram(
        name: impl Into<String>,
        url: impl Into<String>,
        appid: impl Into<String>,
        pagepath: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            kind: Some("miniprogram".into()),
            url: Some(url.into()),
            appid: Some(appid.into()),
            pagepath: Some(pagepath.into()),
            ..Self::default()
        }
    }

    /// A top-level button that opens a sub-menu.
    pub fn parent(name: impl Into<String>, sub_button: Vec<Button>) -> Self {
        Self {
            name: name.into(),
            sub_button,
            ..Self::default()
        }
    }
}

/// Answer of 查询自定义菜单 (`menu/get`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct MenuInfo {
    pub menu: Menu,
    /// 个性化菜单, kept as JSON (the product does not use them).
    #[serde(default)]
    pub conditionalmenu: Vec<serde_json::Value>,
}

impl Client {
    /// 创建自定义菜单 (`POST cgi-bin/menu/create`); replaces the current menu.
    pub async fn menu_create(&self, menu: &Menu) -> Result<()> {
        self.call_ok(Call::post(api::MENU_CREATE, menu)?.idempotent())
            .await
    }

    /// 查询自定义菜单 (`GET cgi-bin/menu/get`). No menu → `Error::Api { errcode: 46003 }`.
    pub async fn menu_get(&self) -> Result<MenuInfo> {
        self.call_json(Call::get(api::MENU_GET)).await
    }

    /// 删除自定义菜单 (`GET cgi-bin/menu/delete`).
    pub async fn menu_delete(&self) -> Result<()> {
        let _: Ignored = self.call_json(Call::get(api::MENU_DELETE)).await?;
        Ok(())
    }
}
