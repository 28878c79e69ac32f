//! Google's Gemini API (`POST {base_url}/v1beta/models/{model}:{action}`, key in
//! `x-goog-api-key`). Paddock relays it through the model gateway for agents that speak
//! it (Gemini CLI); the built-in agent does not use it.

use super::http::HttpCore;
use super::{ApiKey, ModelRequest, ModelStream, Provider, ProviderConfig, ProviderKind};
use crate::ProviderError;
use reqwest::header::{HeaderName, HeaderValue};

#[derive(Debug)]
pub struct GeminiProvider {
    core: HttpCore,
}

impl GeminiProvider {
    pub fn new(config: &ProviderConfig, key: Option<ApiKey>) -> Result<Self, ProviderError> {
        let mut auth = Vec::new();
        if let Some(k) = &key {
            let mut v = HeaderValue::from_str(k.expose()).map_err(|_| {
                ProviderError::Config(format!(
                    "provider {:?}: the API key is not a valid header value",
                    config.name
                ))
            })?;
            v.set_sensitive(true);
            auth.push((HeaderName::from_static("x-goog-api-key"), v));
        }
        let core = HttpCore::new(config, auth, key.is_some())?;
        Ok(GeminiProvider { core })
    }
}

#[async_trait::async_trait]
impl Provider for GeminiProvider {
    fn name(&self) -> &str {
        &self.core.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Gemini
    }

    async fn stream(&self, _request: &ModelRequest) -> Result<ModelStream, ProviderError> {
        Err(ProviderError::Config(format!(
            "provider {:?} is of kind gemini, which serves ACP agents through the model gateway only; the built-in agent needs an anthropic or openai provider",
            self.core.name
        )))
    }

    async fn forward(
        &self,
        tail: &str,
        query: Option<&str>,
        body: Vec<u8>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<reqwest::Response, ProviderError> {
        self.core.forward("/v1beta", tail, query, body, extra).await
    }
}
