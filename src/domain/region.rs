//! The AI Studio region an agent lives in.

/// The AI Studio region of the agents, which picks the API host.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Eu,
    Us,
}

impl Region {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eu => "eu",
            Self::Us => "us",
        }
    }

    pub fn base_url(self) -> &'static str {
        match self {
            Self::Eu => "https://studio-api-eu.ai.vonage.com",
            Self::Us => "https://studio-api-us.ai.vonage.com",
        }
    }
}

impl std::str::FromStr for Region {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "eu" => Ok(Self::Eu),
            "us" => Ok(Self::Us),
            _ => Err(format!("{raw:?} is not a region: use eu or us")),
        }
    }
}
