//! AdmissionReview in, AdmissionReview out (`admission.k8s.io/v1`, and `v1beta1` answered in
//! kind). Pure: bytes in, a decision out.
//!
//! The webhook never denies. Anything it cannot or will not do is answered `allowed: true`
//! without a patch; when the pod's owner asked for injection and did not get it, the reason is
//! an admission warning, which kubectl prints. Only a body that is not an AdmissionReview at all
//! gets an error (HTTP 400), because there is no request uid to answer.

use std::borrow::Cow;

use base64::Engine as _;
use coredog_core::annotations::{self, OptInError};
use serde::Serialize;
use thiserror::Error;

use super::inject::{self, SkipReason};
use super::json_reader::{JsonReader, SyntaxError, needs_no_escape};
use super::pod_view::{MetaView, PodView};

pub const V1: &str = "admission.k8s.io/v1";
pub const V1BETA1: &str = "admission.k8s.io/v1beta1";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BadReview {
    #[error("body is not an AdmissionReview: {0}")]
    NotJson(String),
    #[error("unsupported apiVersion {0:?}; expected {V1} or {V1BETA1}")]
    Version(String),
    #[error("kind is {0:?}, not AdmissionReview")]
    Kind(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request has no uid")]
    NoUid,
}

/// The parts of an AdmissionReview the webhook reads.
#[derive(Default)]
struct ReviewIn<'a> {
    api_version: Cow<'a, str>,
    kind: Cow<'a, str>,
    request: Option<RequestIn<'a>>,
}

#[derive(Default)]
struct RequestIn<'a> {
    uid: Option<Cow<'a, str>>,
    /// Whether `request.kind` is the core group's Pod.
    is_pod: bool,
    operation: Option<Cow<'a, str>>,
    namespace: Option<Cow<'a, str>>,
    object: Option<PodView<'a>>,
    /// Why the object could not be read as a pod, if it could not.
    unreadable_object: Option<String>,
}

impl<'a> ReviewIn<'a> {
    /// Reads a review in one pass; the object is read as a pod when `with_object`, else only
    /// checked.
    fn read(body: &'a [u8], with_object: bool) -> Result<Self, BadReview> {
        let not_json = |err: SyntaxError| BadReview::NotJson(err.to_string());
        let mut reader = JsonReader::new(body).map_err(not_json)?;
        let mut review = Self::default();
        reader
            .optional_object("the review", |reader, field| {
                if field.is("apiVersion") {
                    review.api_version = reader.optional_text("apiVersion")?.unwrap_or_default();
                } else if field.is("kind") {
                    review.kind = reader.optional_text("kind")?.unwrap_or_default();
                } else if field.is("request") {
                    review.request = RequestIn::read(reader, with_object)?;
                } else {
                    reader.skip()?;
                }
                Ok(())
            })
            .map_err(not_json)?;
        if let Some(mismatch) = reader.take_mismatch() {
            return Err(BadReview::NotJson(mismatch));
        }
        reader.end().map_err(not_json)?;
        Ok(review)
    }
}

impl<'a> RequestIn<'a> {
    fn read(reader: &mut JsonReader<'a>, with_object: bool) -> Result<Option<Self>, SyntaxError> {
        let mut request = Self::default();
        let is_object = reader.optional_object("request", |reader, field| {
            if field.is("uid") {
                request.uid = reader.optional_text("request.uid")?;
            } else if field.is("kind") {
                request.is_pod = read_is_pod(reader)?;
            } else if field.is("operation") {
                request.operation = reader.optional_text("request.operation")?;
            } else if field.is("namespace") {
                request.namespace = reader.optional_text("request.namespace")?;
            } else if field.is("object") && with_object {
                // What is wrong with the pod is the pod's problem, not the review's.
                (request.object, request.unreadable_object) = reader.read_apart(PodView::read)?;
            } else {
                reader.skip()?;
            }
            Ok(())
        })?;
        Ok(is_object.then_some(request))
    }
}

/// Whether a `request.kind` (group, version, kind) is the core group's Pod.
fn read_is_pod(reader: &mut JsonReader<'_>) -> Result<bool, SyntaxError> {
    let (mut core_group, mut pod) = (true, false);
    reader.optional_object("request.kind", |reader, field| {
        if field.is("group") {
            core_group = reader
                .optional_string("request.kind.group")?
                .is_none_or(|group| group.is(""));
        } else if field.is("kind") {
            pod = reader
                .optional_string("request.kind.kind")?
                .is_some_and(|kind| kind.is("Pod"));
        } else {
            reader.skip()?;
        }
        Ok(())
    })?;
    Ok(core_group && pod)
}

/// The answer sent back: always allowed, with the patch and warnings if any.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewOut {
    pub api_version: String,
    pub kind: &'static str,
    pub response: ResponseOut,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseOut {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// The JSONPatch, sent in base64.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_base64"
    )]
    pub patch: Option<Vec<u8>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ReviewOut {
    pub fn allowed(
        api_version: &str,
        uid: &str,
        patch: Option<&[u8]>,
        warnings: Vec<String>,
    ) -> Self {
        Self {
            api_version: api_version.to_owned(),
            kind: "AdmissionReview",
            response: ResponseOut {
                uid: uid.to_owned(),
                allowed: true,
                patch_type: patch.map(|_| "JSONPatch"),
                patch: patch.map(<[u8]>::to_vec),
                warnings,
            },
        }
    }

    /// The answer as JSON, the same bytes as its `Serialize` form. Written by hand so that the
    /// patch, the bulk of an answer, is base64-encoded straight into it (base64 never needs
    /// escaping); strings are escaped as serde_json would ([`write_json_str`]).
    pub fn to_json(&self) -> Vec<u8> {
        let response = &self.response;
        let patch_len = response
            .patch
            .as_ref()
            .map_or(0, |patch| patch.len().div_ceil(3) * 4);
        let mut out = Vec::with_capacity(192 + patch_len);
        out.extend_from_slice(b"{\"apiVersion\":");
        write_json_str(&mut out, &self.api_version);
        out.extend_from_slice(b",\"kind\":");
        write_json_str(&mut out, self.kind);
        out.extend_from_slice(b",\"response\":{\"uid\":");
        write_json_str(&mut out, &response.uid);
        out.extend_from_slice(if response.allowed {
            b",\"allowed\":true"
        } else {
            b",\"allowed\":false"
        });
        if let Some(patch_type) = response.patch_type {
            out.extend_from_slice(b",\"patchType\":");
            write_json_str(&mut out, patch_type);
        }
        if let Some(patch) = &response.patch {
            out.extend_from_slice(b",\"patch\":\"");
            encode_base64(&mut out, patch);
            out.push(b'"');
        }
        if !response.warnings.is_empty() {
            out.extend_from_slice(b",\"warnings\":");
            write_json(&mut out, &response.warnings);
        }
        out.extend_from_slice(b"}}");
        out
    }
}

/// The base64 alphabet of RFC 4648, section 4 (with `+` and `/`, padded), which Kubernetes
/// reads a `[]byte` field in.
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The two characters of every 12-bit value: twice as many bits per lookup as one character
/// at a time, which halves the cost of the patch's encoding, most of an answer's.
static BASE64_PAIRS: [[u8; 2]; 4096] = {
    let mut pairs = [[0; 2]; 4096];
    let mut value = 0;
    while value < 4096 {
        pairs[value] = [BASE64[value >> 6], BASE64[value & 63]];
        value += 1;
    }
    pairs
};

/// Appends `bytes` in padded standard base64.
fn encode_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    let mut encoded = out[start..].chunks_exact_mut(4);
    let mut groups = bytes.chunks_exact(3);
    // Groups first: a zip asks its first iterator first, and must not use up the last quad.
    for (group, quad) in (&mut groups).zip(&mut encoded) {
        let bits = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        let [a, b] = BASE64_PAIRS[(bits >> 12) as usize];
        let [c, d] = BASE64_PAIRS[(bits & 0xfff) as usize];
        quad.copy_from_slice(&[a, b, c, d]);
    }
    let rest = groups.remainder();
    let bits = rest.iter().enumerate().fold(0, |bits, (at, &byte)| {
        bits | u32::from(byte) << (16 - 8 * at)
    });
    let sextet = |shift: u32| BASE64[(bits >> shift & 63) as usize];
    let last = match rest.len() {
        1 => [sextet(18), sextet(12), b'=', b'='],
        2 => [sextet(18), sextet(12), sextet(6), b'='],
        _ => return,
    };
    if let Some(quad) = encoded.next() {
        quad.copy_from_slice(&last);
    }
}

fn serialize_base64<S: serde::Serializer>(
    patch: &Option<Vec<u8>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match patch {
        Some(bytes) => {
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        None => serializer.serialize_none(),
    }
}

/// Appends `value` as JSON. Writing into a `Vec` cannot fail, and strings, booleans and lists
/// of strings always serialise.
pub(super) fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(out, value);
}

/// Appends `text` as a JSON string: as it is between quotes when nothing in it needs an escape
/// (names, paths and uids seldom do), else through serde_json.
pub(super) fn write_json_str(out: &mut Vec<u8>, text: &str) {
    if needs_no_escape(text) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        write_json(out, text);
    }
}

/// The answer to one review, plus what it means for logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The AdmissionReview to send back.
    pub review: ReviewOut,
    /// `namespace/name` of the pod (`namespace/generateName*` before it has a name).
    pub pod: String,
    /// Containers that have a dump directory once the answer is applied (on reinvocation,
    /// those that had it already too).
    pub injected: Vec<String>,
    pub skips: Vec<SkipReason>,
    /// Whether the pod asked for injection (warnings about it are worth a log line).
    pub opted_in: bool,
}

impl Decision {
    pub fn warnings(&self) -> &[String] {
        &self.review.response.warnings
    }

    /// Whether the answer carries a patch.
    pub fn patched(&self) -> bool {
        self.review.response.patch.is_some()
    }
}

/// Decides one AdmissionReview. `host_dir` is the node's dump root.
pub fn review(body: &[u8], host_dir: &str) -> Result<Decision, BadReview> {
    let (version, request, uid) = check(ReviewIn::read(body, true)?)?;
    let mut decision = Decision::new(version, &uid);
    let is_pod_create = request.is_pod && request.operation.as_deref() == Some("CREATE");
    // Only a pod being created may be waiting for a dump directory; whatever else is sent
    // here is none of the webhook's business, readable or not.
    if let Some(problem) = request.unreadable_object.as_ref().filter(|_| is_pod_create) {
        decision.skips.push(SkipReason::InternalError);
        decision.opted_in = true;
        decision.pod = "?".to_owned();
        decision
            .review
            .response
            .warnings
            .push(format!("coredog: cannot read the pod: {problem}"));
        return Ok(decision);
    }
    let patch = decide(&request, is_pod_create, host_dir, &mut decision);
    decision.review.response.patch_type = patch.as_ref().map(|_| "JSONPatch");
    decision.review.response.patch = patch;
    Ok(decision)
}

/// The version to answer in, the request, and its uid.
fn check(review: ReviewIn<'_>) -> Result<(Cow<'_, str>, RequestIn<'_>, Cow<'_, str>), BadReview> {
    if review.api_version != V1 && review.api_version != V1BETA1 {
        return Err(BadReview::Version(review.api_version.into_owned()));
    }
    if review.kind != "AdmissionReview" {
        return Err(BadReview::Kind(review.kind.into_owned()));
    }
    let mut request = review.request.ok_or(BadReview::NoRequest)?;
    let uid = request.uid.take().ok_or(BadReview::NoUid)?;
    Ok((review.api_version, request, uid))
}

impl Decision {
    fn new(api_version: Cow<'_, str>, uid: &str) -> Self {
        Self {
            review: ReviewOut::allowed(&api_version, uid, None, Vec::new()),
            pod: String::new(),
            injected: Vec::new(),
            skips: Vec::new(),
            opted_in: false,
        }
    }
}

/// Fills `decision` and returns the JSONPatch, if any.
fn decide(
    request: &RequestIn<'_>,
    is_pod_create: bool,
    host_dir: &str,
    decision: &mut Decision,
) -> Option<Vec<u8>> {
    let Some(pod) = request.object.as_ref().filter(|_| is_pod_create) else {
        decision.skips.push(SkipReason::NotPodCreate);
        return None;
    };
    let meta = &pod.metadata;
    let namespace = request
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .or(meta.namespace.as_deref().filter(|ns| !ns.is_empty()));
    let warnings = &mut decision.review.response.warnings;
    let opt_in = annotations::read_opt_in_with(|key| meta.annotation(key));
    let request_spec = match opt_in {
        Ok(None) => {
            decision.skips.push(SkipReason::NotOptedIn);
            return None;
        }
        Ok(Some(spec)) => spec,
        Err(err) => {
            decision.pod = pod_ref(namespace, meta);
            decision.opted_in = true;
            decision.skips.push(SkipReason::InvalidAnnotation);
            warnings.push(format!("coredog: {}", describe(&err)));
            return None;
        }
    };
    decision.pod = pod_ref(namespace, meta);
    decision.opted_in = true;
    let Some(namespace) = namespace else {
        decision.skips.push(SkipReason::InternalError);
        warnings.push("coredog: the request names no namespace".to_owned());
        return None;
    };
    let plan = inject::plan(pod, namespace, host_dir, &request_spec);
    decision.injected = plan.injected;
    warnings.extend(plan.warnings);
    decision.skips.extend(plan.skips);
    plan.patch.into_json()
}

fn describe(err: &OptInError) -> String {
    format!("{err}; the pod was admitted without a dump directory")
}

fn pod_ref(namespace: Option<&str>, meta: &MetaView<'_>) -> String {
    let namespace = namespace.unwrap_or("?");
    match (meta.name.as_deref(), meta.generate_name.as_deref()) {
        (Some(name), _) if !name.is_empty() => [namespace, "/", name].concat(),
        (_, Some(prefix)) if !prefix.is_empty() => [namespace, "/", prefix, "*"].concat(),
        _ => [namespace, "/?"].concat(),
    }
}

/// Reads only the version and uid of a review, to answer it after an internal failure.
pub fn version_and_uid(body: &[u8]) -> Option<(String, String)> {
    let (version, _, uid) = check(ReviewIn::read(body, false).ok()?).ok()?;
    Some((version.into_owned(), uid.into_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};

    use super::*;

    fn response_of(decision: &Decision) -> Value {
        serde_json::to_value(&decision.review).unwrap()
    }

    fn review_body(version: &str, operation: &str, pod: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": version,
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": { "group": "", "version": "v1", "kind": "Pod" },
                "resource": { "group": "", "version": "v1", "resource": "pods" },
                "operation": operation,
                "namespace": "shop",
                "object": pod,
            }
        }))
        .unwrap()
    }

    fn opted_in_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "generateName": "web-", "annotations": { "coredog.io/inject": "true", "coredog.io/path": "/corefile" } },
            "spec": { "containers": [{ "name": "app", "image": "app" }] }
        })
    }

    #[test]
    fn an_opted_in_pod_gets_a_patch_in_the_version_asked() {
        for version in [V1, V1BETA1] {
            let decision = review(&review_body(version, "CREATE", opted_in_pod()), "/d").unwrap();
            assert_eq!(response_of(&decision)["apiVersion"], version);
            let response = &response_of(&decision)["response"];
            assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
            assert_eq!(response["allowed"], true);
            assert_eq!(response["patchType"], "JSONPatch");
            assert!(response.get("warnings").is_none());
            assert_eq!(decision.injected, ["app"]);
            assert_eq!(decision.pod, "shop/web-*");
        }
    }

    #[test]
    fn pods_that_did_not_opt_in_get_nothing() {
        let pod =
            json!({ "metadata": { "name": "plain" }, "spec": { "containers": [{ "name": "a" }] } });
        let decision = review(&review_body(V1, "CREATE", pod), "/d").unwrap();
        assert_eq!(
            response_of(&decision)["response"],
            json!({ "uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true })
        );
        assert_eq!(decision.skips, [SkipReason::NotOptedIn]);
        assert!(!decision.opted_in);
    }

    #[test]
    fn the_spec_of_a_pod_that_did_not_opt_in_is_not_read() {
        // A spec the webhook could not read: stepped over, not reported.
        let pod = json!({
            "metadata": { "name": "plain", "annotations": { "team": "shop" } },
            "spec": { "containers": "not a list", "volumes": 7 }
        });
        let decision = review(&review_body(V1, "CREATE", pod), "/d").unwrap();
        assert_eq!(decision.skips, [SkipReason::NotOptedIn]);
        assert_eq!(
            response_of(&decision)["response"],
            json!({ "uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true })
        );
    }

    #[test]
    fn ephemeral_containers_are_never_given_a_dump_directory() {
        let mut pod = opted_in_pod();
        pod["spec"]["ephemeralContainers"] = json!([{ "name": "debugger", "image": "busybox" }]);
        let decision = review(&review_body(V1, "CREATE", pod), "/d").unwrap();
        assert_eq!(decision.injected, ["app"]);
        let patch = decision.review.response.patch.clone().unwrap();
        let patch = String::from_utf8(patch).unwrap();
        assert!(patch.contains("/spec/containers/0/"), "{patch}");
        assert!(!patch.contains("ephemeralContainers"), "{patch}");
    }

    #[test]
    fn updates_and_other_kinds_are_allowed_untouched() {
        let decision = review(&review_body(V1, "UPDATE", opted_in_pod()), "/d").unwrap();
        assert_eq!(decision.skips, [SkipReason::NotPodCreate]);
        assert!(response_of(&decision)["response"].get("patch").is_none());
    }

    #[test]
    fn a_bad_path_is_a_warning_not_a_denial() {
        let mut pod = opted_in_pod();
        pod["metadata"]["annotations"]["coredog.io/path"] = json!("/etc/cores");
        let decision = review(&review_body(V1, "CREATE", pod), "/d").unwrap();
        let response = &response_of(&decision)["response"];
        assert_eq!(response["allowed"], true);
        assert!(response.get("patch").is_none());
        let warning = response["warnings"][0].as_str().unwrap();
        assert!(warning.contains("/etc"), "{warning}");
        assert_eq!(decision.skips, [SkipReason::InvalidAnnotation]);
    }

    #[test]
    fn a_pod_that_does_not_deserialise_is_allowed_with_a_warning() {
        let mut pod = opted_in_pod();
        pod["spec"]["containers"] = json!("not a list");
        let decision = review(&review_body(V1, "CREATE", pod), "/d").unwrap();
        assert_eq!(response_of(&decision)["response"]["allowed"], true);
        assert_eq!(decision.skips, [SkipReason::InternalError]);
    }

    #[test]
    fn unreadable_metadata_is_reported_only_for_a_pod_being_created() {
        let pod = json!({ "metadata": { "annotations": 5 }, "spec": {} });
        let created = review(&review_body(V1, "CREATE", pod.clone()), "/d").unwrap();
        let warning = response_of(&created)["response"]["warnings"][0].clone();
        assert!(
            warning
                .as_str()
                .is_some_and(|text| text.starts_with("coredog: cannot read the pod")),
            "{warning}"
        );
        assert_eq!(created.skips, [SkipReason::InternalError]);
        for operation in ["UPDATE", "DELETE"] {
            let other = review(&review_body(V1, operation, pod.clone()), "/d").unwrap();
            assert_eq!(other.skips, [SkipReason::NotPodCreate], "{operation}");
            assert!(!other.opted_in);
            assert!(
                response_of(&other)["response"].get("warnings").is_none(),
                "{operation}"
            );
        }
    }

    #[test]
    fn bodies_that_are_not_reviews_are_rejected() {
        assert!(matches!(review(b"{", "/d"), Err(BadReview::NotJson(_))));
        assert!(matches!(review(b"[]", "/d"), Err(BadReview::NotJson(_))));
        assert_eq!(
            review(
                br#"{"apiVersion":"v1","kind":"AdmissionReview","request":{"uid":"u"}}"#,
                "/d"
            ),
            Err(BadReview::Version("v1".to_owned()))
        );
        assert_eq!(
            review(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#,
                "/d"
            ),
            Err(BadReview::Kind("Pod".to_owned()))
        );
        assert_eq!(
            review(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "/d"
            ),
            Err(BadReview::NoRequest)
        );
    }

    #[test]
    fn the_answer_is_written_as_serde_would_write_it() {
        let patch = Some(br#"[{"op":"add"}]"#.as_slice());
        let answers = [
            ReviewOut::allowed(V1, "u-1", None, Vec::new()),
            ReviewOut::allowed(V1BETA1, "u\"2\\", patch, Vec::new()),
            ReviewOut::allowed(
                V1,
                "u3",
                patch,
                vec!["coredog: \"x\"\n".to_owned(), "second".to_owned()],
            ),
            ReviewOut::allowed(V1, "u4", None, vec!["only a warning".to_owned()]),
        ];
        for answer in answers {
            assert_eq!(
                String::from_utf8(answer.to_json()).unwrap(),
                serde_json::to_string(&answer).unwrap()
            );
        }
    }

    #[test]
    fn the_patch_is_standard_padded_base64() {
        // Every byte value, in every position of a group, and every length of the last group.
        let bytes: Vec<u8> = (0..=255u8)
            .chain((0..=255u8).rev())
            .chain(0..=255u8)
            .collect();
        for len in (0..=12).chain([255, 256, 257, bytes.len()]) {
            let mut out = b"x".to_vec();
            encode_base64(&mut out, &bytes[..len]);
            assert_eq!(
                out[1..],
                *base64::engine::general_purpose::STANDARD
                    .encode(&bytes[..len])
                    .as_bytes(),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn the_uid_can_be_read_alone() {
        let body = review_body(V1, "CREATE", opted_in_pod());
        assert_eq!(
            version_and_uid(&body),
            Some((
                V1.to_owned(),
                "705ab4f5-6393-11e8-b7cc-42010a800002".to_owned()
            ))
        );
    }

    fn annotated_pod(annotations: &BTreeMap<String, String>, containers: &[String]) -> Value {
        let containers: Vec<Value> = containers
            .iter()
            .map(|name| json!({ "name": name }))
            .collect();
        json!({
            "metadata": { "generateName": "p-", "annotations": annotations },
            "spec": { "containers": containers, "initContainers": [{ "name": "init" }] }
        })
    }

    fn assert_allowed(decision: &Decision) -> Result<(), proptest::test_runner::TestCaseError> {
        proptest::prop_assert!(response_of(decision)["response"]["allowed"] == json!(true));
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic_and_never_deny(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(decision) = review(&body, "/d") {
                assert_allowed(&decision)?;
            }
        }

        #[test]
        fn corrupted_reviews_never_panic_and_never_deny(flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..8)) {
            let mut body = review_body(V1, "CREATE", opted_in_pod());
            for (at, byte) in flips {
                let at = at % body.len();
                body[at] = byte;
            }
            if let Ok(decision) = review(&body, "/d") {
                assert_allowed(&decision)?;
            }
        }

        #[test]
        fn arbitrary_annotations_never_deny_and_patches_apply(
            inject in proptest::prop_oneof![proptest::strategy::Just("true".to_owned()), "\\PC{0,8}"],
            path in proptest::prop_oneof![proptest::strategy::Just("/corefile".to_owned()), "/[a-z./]{0,12}", "\\PC{0,16}"],
            selection in "[a-z, \\PC]{0,24}",
            containers in proptest::collection::vec("[a-z]{1,3}", 1..4),
        ) {
            let annotations = BTreeMap::from([
                (annotations::INJECT.to_owned(), inject),
                (annotations::PATH.to_owned(), path),
                (annotations::CONTAINER.to_owned(), selection),
            ]);
            let pod = annotated_pod(&annotations, &containers);
            let decision = review(&review_body(V1, "CREATE", pod.clone()), "/d").expect("a well-formed review");
            assert_allowed(&decision)?;
            if let Some(patch) = response_of(&decision)["response"]["patch"].as_str() {
                let bytes = base64::engine::general_purpose::STANDARD.decode(patch).unwrap();
                let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
                let mut patched = pod;
                json_patch::patch(&mut patched, &patch).unwrap();
                let typed: Pod = serde_json::from_value(patched).unwrap();
                let volumes = typed.spec.unwrap().volumes.unwrap();
                proptest::prop_assert_eq!(volumes.len(), 1);
            }
        }
    }
}
