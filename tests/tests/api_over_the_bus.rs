//! Plugins in the apiserver's process reach the API over the kernel bus, through the same handler chain as HTTP.

use anyhow::Result;
use kubernel_api::rest::ApiRequest;
use kubernel_e2e::Cluster;

fn request(method: &str, path: &str, body: &str) -> ApiRequest {
    ApiRequest {
        method: method.into(),
        path: path.into(),
        content_type: if body.is_empty() {
            String::new()
        } else {
            "application/json".into()
        },
        accept: String::new(),
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn api_requests_over_the_bus_should_share_state_with_http() -> Result<()> {
    let c = Cluster::start("")?;
    let cm =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-bus"},"data":{"k":"v"}}"#;
    let created = c.kernel.ask(
        "@apiserver",
        &request("POST", "/api/v1/namespaces/default/configmaps", cm),
    )?;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert!(created.content_type.starts_with("application/json"));

    // The same object over HTTP, and kubectl sees it.
    let (status, body) = c.get("/api/v1/namespaces/default/configmaps/from-bus")?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        c.ok(&["get", "configmap", "from-bus", "-o", "jsonpath={.data.k}"])?,
        "v"
    );

    let list = c.kernel.ask(
        "apiserver",
        &request(
            "GET",
            "/api/v1/namespaces/default/configmaps?labelSelector=none%3Dhere",
            "",
        ),
    )?;
    assert_eq!(list.status, 200);
    assert!(String::from_utf8_lossy(&list.body).contains("\"items\":[]"));

    // Errors are the same Status objects.
    let dup = c.kernel.ask(
        "apiserver",
        &request("POST", "/api/v1/namespaces/default/configmaps", cm),
    )?;
    assert_eq!(dup.status, 409);
    assert!(String::from_utf8_lossy(&dup.body).contains("AlreadyExists"));
    let watch = c.kernel.ask(
        "apiserver",
        &request(
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true",
            "",
        ),
    )?;
    assert_eq!(
        watch.status, 400,
        "watches are not carried over the bus yet"
    );
    Ok(())
}
