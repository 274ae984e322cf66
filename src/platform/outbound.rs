//! Messages we send to a follower outside a passive reply: the follow-up of a reply that missed
//! WeChat's 5-second budget, and the welcome article card. Behind a trait so tests and the
//! dev mode can see what was sent; the production implementation is the WeChat API client.

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, schemars::JsonSchema)]
pub enum CustomMessage {
    Text(String),
    News {
        title: String,
        description: String,
        url: String,
        pic_url: String,
    },
}

#[async_trait]
pub trait Outbound: Send + Sync + 'static {
    /// Customer-service message (客服消息), allowed within 48 h of the follower's last interaction.
    async fn send_custom(&self, openid: &str, message: CustomMessage) -> Result<(), wechat::Error>;
}
