//! `egress-probe`: sends the request it is asked to and answers with everything it can see of
//! it (its own headers) and of the response. The egress tests point it at loopback servers and
//! at places no grant covers.

wit_bindgen::generate!({
    world: "tool",
    path: "../../../wit/v0.2",
    generate_all,
});

use serde_json::{Value, json};

struct Probe;

impl Guest for Probe {
    fn configure(_settings: String) -> Result<(), String> {
        Ok(())
    }

    fn describe() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "fetch".into(),
            description: "Sends one HTTP request and shows the headers it set and the response"
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "method": {"type": "string"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body": {"type": "string"},
                    "redirects": {"type": "integer", "minimum": 0},
                    "times": {"type": "integer", "minimum": 1}
                },
                "required": ["url"]
            })
            .to_string(),
        }]
    }

    fn invoke(name: String, arguments: String) -> Result<String, ToolError> {
        if name != "fetch" {
            return Err(ToolError::UnknownTool(name));
        }
        let args: Value = serde_json::from_str(&arguments)
            .map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
        let headers: Vec<(String, String)> = args["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let request = http_client::Request {
            method: args["method"].as_str().unwrap_or("GET").to_string(),
            url: args["url"].as_str().unwrap_or_default().to_string(),
            headers: headers.clone(),
            body: args["body"].as_str().map(|b| b.as_bytes().to_vec()),
        };
        let redirects = args["redirects"].as_u64().unwrap_or(0) as u32;
        let mut answers = Vec::new();
        for _ in 0..args["times"].as_u64().unwrap_or(1) {
            let response = http_client::fetch(&request, redirects).map_err(ToolError::Failed)?;
            answers.push(json!({
                "status": response.status,
                "headers": response.headers,
                "body": String::from_utf8_lossy(&response.body),
                "url": response.url,
            }));
        }
        Ok(json!({"sentHeaders": headers, "responses": answers}).to_string())
    }
}

export!(Probe);
