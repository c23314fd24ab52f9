//! The parts of a pod the webhook reads, borrowed from the request body.
//!
//! The webhook needs names, mounts, volumes, one environment variable and its own annotations;
//! the rest of the pod is only checked as JSON ([`JsonReader`]). The spec of a pod without
//! CoreDog annotations (most of them) is stepped over; the spec of a pod with them is read on
//! the way, or, should it come before the metadata, when asked for.
//!
//! A field of an unexpected type is noted on the reader (and the pod answered as unreadable);
//! a missing or null field reads as absent.

use std::borrow::Cow;
use std::cell::OnceCell;

use coredog_core::annotations;
use coredog_core::layout::{POD_NAME_ENV, POD_NAME_FIELD};

use super::json_reader::{JsonReader, JsonStr, SyntaxError};

/// A spec as read: `Err` with a sentence when a field the webhook needs has another type.
type SpecRead<'a> = Result<Option<SpecView<'a>>, String>;

#[derive(Debug, Default)]
pub struct PodView<'a> {
    pub metadata: MetaView<'a>,
    /// The spec's JSON text, checked as JSON.
    spec_text: Option<&'a str>,
    spec: OnceCell<SpecRead<'a>>,
}

impl<'a> PodView<'a> {
    /// Reads the pod at `reader`: `None` for null or a value that is not an object (noted).
    pub fn read(reader: &mut JsonReader<'a>) -> Result<Option<Self>, SyntaxError> {
        let mut pod = Self::default();
        let is_object = reader.optional_object("the pod", |reader, field| {
            if field.is("metadata") {
                pod.metadata = MetaView::read(reader)?;
            } else if field.is("spec") {
                pod.spec = OnceCell::new();
                if pod
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|own| !own.is_empty())
                {
                    // What is wrong with the spec is for whoever asks for it.
                    let (spec, mismatch) = reader.read_apart(SpecView::read)?;
                    let _ = pod.spec.set(mismatch.map_or(Ok(spec), Err));
                } else {
                    pod.spec_text = Some(reader.raw_value()?);
                }
            } else {
                reader.skip()?;
            }
            Ok(())
        })?;
        Ok(is_object.then_some(pod))
    }

    /// Reads a pod from JSON text; any mismatch is an error.
    #[cfg(test)]
    pub fn parse(text: &'a str) -> Result<Self, String> {
        let mut reader = JsonReader::of_text(text).map_err(|err| err.to_string())?;
        let pod = Self::read(&mut reader).map_err(|err| err.to_string())?;
        reader.end().map_err(|err| err.to_string())?;
        match reader.take_mismatch() {
            Some(mismatch) => Err(mismatch),
            None => pod.ok_or_else(|| "the pod is null".to_owned()),
        }
    }

    /// The pod's spec: `Ok(None)` when it has none, `Err` with a sentence when a field the
    /// webhook needs has an unexpected type.
    pub fn spec(&self) -> Result<Option<&SpecView<'a>>, &str> {
        let read = self.spec.get_or_init(|| {
            let Some(text) = self.spec_text else {
                return Ok(None);
            };
            let mut reader = JsonReader::of_text(text).map_err(|err| err.to_string())?;
            let spec = SpecView::read(&mut reader).map_err(|err| err.to_string())?;
            reader.take_mismatch().map_or(Ok(spec), Err)
        });
        match read {
            Ok(spec) => Ok(spec.as_ref()),
            Err(problem) => Err(problem),
        }
    }
}

/// An annotation's key and value.
pub type Annotation<'a> = (Cow<'a, str>, Cow<'a, str>);

#[derive(Debug, Default)]
pub struct MetaView<'a> {
    pub name: Option<Cow<'a, str>>,
    pub generate_name: Option<Cow<'a, str>>,
    pub namespace: Option<Cow<'a, str>>,
    /// The pod's `coredog.io/` annotations, in order; `None` when it has no annotations at all.
    pub annotations: Option<Vec<Annotation<'a>>>,
}

impl<'a> MetaView<'a> {
    fn read(reader: &mut JsonReader<'a>) -> Result<Self, SyntaxError> {
        let mut meta = Self::default();
        reader.optional_object("metadata", |reader, field| {
            if field.is("name") {
                meta.name = reader.optional_text("metadata.name")?;
            } else if field.is("generateName") {
                meta.generate_name = reader.optional_text("metadata.generateName")?;
            } else if field.is("namespace") {
                meta.namespace = reader.optional_text("metadata.namespace")?;
            } else if field.is("annotations") {
                meta.annotations = read_own_annotations(reader)?;
            } else {
                reader.skip()?;
            }
            Ok(())
        })?;
        Ok(meta)
    }

    /// The value of one of the pod's `coredog.io/` annotations (the last, if repeated).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .as_ref()?
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_ref())
    }
}

fn read_own_annotations<'a>(
    reader: &mut JsonReader<'a>,
) -> Result<Option<Vec<Annotation<'a>>>, SyntaxError> {
    let mut own = Vec::new();
    let is_object = reader.optional_object("metadata.annotations", |reader, key| {
        if !key.starts_with(annotations::PREFIX) {
            return reader.skip();
        }
        let value = reader.optional_text("a coredog.io annotation")?;
        if let (Some(key), Some(value)) = (key.decode(), value) {
            own.push((key, value));
        }
        Ok(())
    })?;
    Ok(is_object.then_some(own))
}

#[derive(Debug, Default)]
pub struct SpecView<'a> {
    pub containers: Vec<ContainerView<'a>>,
    pub init_containers: Option<Vec<ContainerView<'a>>>,
    pub volumes: Option<Vec<VolumeView<'a>>>,
}

impl<'a> SpecView<'a> {
    fn read(reader: &mut JsonReader<'a>) -> Result<Option<Self>, SyntaxError> {
        let mut spec = Self::default();
        let is_object = reader.optional_object("spec", |reader, field| {
            if field.is("containers") {
                spec.containers =
                    read_list(reader, "spec.containers", ContainerView::read)?.unwrap_or_default();
            } else if field.is("initContainers") {
                spec.init_containers =
                    read_list(reader, "spec.initContainers", ContainerView::read)?;
            } else if field.is("volumes") {
                spec.volumes = read_list(reader, "spec.volumes", VolumeView::read)?;
            } else {
                reader.skip()?;
            }
            Ok(())
        })?;
        Ok(is_object.then_some(spec))
    }
}

/// A list of items read by `read_item` (items it gives up on are left out); `None` for null.
fn read_list<'a, T>(
    reader: &mut JsonReader<'a>,
    field: &str,
    mut read_item: impl FnMut(&mut JsonReader<'a>) -> Result<Option<T>, SyntaxError>,
) -> Result<Option<Vec<T>>, SyntaxError> {
    let mut items = Vec::new();
    let is_list = reader.optional_list(field, |reader| {
        items.extend(read_item(reader)?);
        Ok(())
    })?;
    Ok(is_list.then_some(items))
}

#[derive(Debug)]
pub struct ContainerView<'a> {
    pub name: Cow<'a, str>,
    /// Whether the container has an `env` list, even an empty one.
    pub has_env_list: bool,
    /// Whether its last `COREDOG_POD_NAME` (if any; the one the kubelet uses) is the pod's name
    /// from the downward API.
    pub pod_name_env: Option<bool>,
    pub volume_mounts: Option<Vec<MountView<'a>>>,
    /// The `devicePath` of each of its `volumeDevices`: no mount may be at one.
    pub device_paths: Vec<Cow<'a, str>>,
}

impl<'a> ContainerView<'a> {
    fn read(reader: &mut JsonReader<'a>) -> Result<Option<Self>, SyntaxError> {
        let mut name = None;
        let mut has_env_list = false;
        let mut pod_name_env = None;
        let mut volume_mounts = None;
        let mut device_paths = Vec::new();
        let is_object = reader.optional_object("a container", |reader, field| {
            if field.is("name") {
                name = reader.optional_text("a container's name")?;
            } else if field.is("env") {
                pod_name_env = None;
                has_env_list = reader.optional_list("a container's env", |reader| {
                    // The kubelet sets a variable defined twice to its last definition.
                    let variable = read_env_variable(reader)?;
                    if variable.is_some() {
                        pod_name_env = variable;
                    }
                    Ok(())
                })?;
            } else if field.is("volumeMounts") {
                volume_mounts = read_list(reader, "a container's volumeMounts", MountView::read)?;
            } else if field.is("volumeDevices") {
                device_paths = read_list(reader, "a container's volumeDevices", read_device_path)?
                    .unwrap_or_default();
            } else {
                reader.skip()?;
            }
            Ok(())
        })?;
        if !is_object {
            return Ok(None);
        }
        let Some(name) = name else {
            reader.note_mismatch(|| "a container has no name".to_owned());
            return Ok(None);
        };
        Ok(Some(Self {
            name,
            has_env_list,
            pod_name_env,
            volume_mounts,
            device_paths,
        }))
    }
}

/// A volume device's `devicePath`.
fn read_device_path<'a>(reader: &mut JsonReader<'a>) -> Result<Option<Cow<'a, str>>, SyntaxError> {
    let mut path = None;
    reader.optional_object("a volume device", |reader, field| {
        if field.is("devicePath") {
            path = reader.optional_text("a volume device's devicePath")?;
        } else {
            reader.skip()?;
        }
        Ok(())
    })?;
    Ok(path)
}

/// For `COREDOG_POD_NAME`, whether it is the pod's name from the downward API; `None` for any
/// other variable.
fn read_env_variable(reader: &mut JsonReader<'_>) -> Result<Option<bool>, SyntaxError> {
    let mut is_ours = false;
    let mut from_pod_name = false;
    reader.optional_object("an env variable", |reader, field| {
        if field.is("name") {
            is_ours = reader
                .optional_string("an env variable's name")?
                .is_some_and(|name| name.is(POD_NAME_ENV));
        } else if field.is("valueFrom") {
            from_pod_name = read_field_path(reader)?.is_some_and(|path| path.is(POD_NAME_FIELD));
        } else {
            reader.skip()?;
        }
        Ok(())
    })?;
    Ok(is_ours.then_some(from_pod_name))
}

/// `valueFrom.fieldRef.fieldPath` of an env variable.
fn read_field_path<'a>(reader: &mut JsonReader<'a>) -> Result<Option<JsonStr<'a>>, SyntaxError> {
    let mut path = None;
    reader.optional_object("valueFrom", |reader, field| {
        if !field.is("fieldRef") {
            return reader.skip();
        }
        reader.optional_object("valueFrom.fieldRef", |reader, field| {
            if field.is("fieldPath") {
                path = reader.optional_string("valueFrom.fieldRef.fieldPath")?;
            } else {
                reader.skip()?;
            }
            Ok(())
        })?;
        Ok(())
    })?;
    Ok(path)
}

#[derive(Debug)]
pub struct MountView<'a> {
    /// Empty when the mount names no volume.
    pub name: Cow<'a, str>,
    /// Empty when the mount has no path.
    pub mount_path: Cow<'a, str>,
}

impl<'a> MountView<'a> {
    fn read(reader: &mut JsonReader<'a>) -> Result<Option<Self>, SyntaxError> {
        let mut mount = Self {
            name: Cow::Borrowed(""),
            mount_path: Cow::Borrowed(""),
        };
        let is_object = reader.optional_object("a volume mount", |reader, field| {
            if field.is("name") {
                mount.name = reader
                    .optional_text("a volume mount's name")?
                    .unwrap_or_default();
            } else if field.is("mountPath") {
                mount.mount_path = reader
                    .optional_text("a volume mount's mountPath")?
                    .unwrap_or_default();
            } else {
                reader.skip()?;
            }
            Ok(())
        })?;
        Ok(is_object.then_some(mount))
    }
}

#[derive(Debug)]
pub struct VolumeView<'a> {
    /// Empty when the volume has no name.
    pub name: Cow<'a, str>,
    /// Whether it is a hostPath volume.
    pub host_path: bool,
}

impl<'a> VolumeView<'a> {
    fn read(reader: &mut JsonReader<'a>) -> Result<Option<Self>, SyntaxError> {
        let mut volume = Self {
            name: Cow::Borrowed(""),
            host_path: false,
        };
        let is_object = reader.optional_object("a volume", |reader, field| {
            if field.is("name") {
                volume.name = reader.optional_text("a volume's name")?.unwrap_or_default();
            } else if field.is("hostPath") {
                volume.host_path =
                    reader.optional_object("a volume's hostPath", |reader, _| reader.skip())?;
            } else {
                reader.skip()?;
            }
            Ok(())
        })?;
        Ok(is_object.then_some(volume))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_read_down_to_what_injection_needs() {
        let pod = PodView::parse(include_str!("../../tests/fixtures/deployment-pod.json")).unwrap();
        let meta = &pod.metadata;
        assert_eq!(meta.name, None);
        assert_eq!(
            meta.generate_name.as_deref(),
            Some("crash-test-7d9f8b6c5d-")
        );
        assert_eq!(meta.namespace.as_deref(), Some("default"));
        assert_eq!(meta.annotation("coredog.io/path"), Some("/corefile"));
        assert_eq!(meta.annotation("coredog.io/container"), Some("app"));
        let spec = pod.spec().unwrap().unwrap();
        let names: Vec<_> = spec.containers.iter().map(|c| c.name.as_ref()).collect();
        assert_eq!(names, ["app", "sidecar"]);
        assert!(spec.init_containers.is_none());
        let volumes = spec.volumes.as_ref().unwrap();
        assert_eq!(volumes[0].name, "kube-api-access-x7k2p");
        assert!(!volumes[0].host_path);
        let mounts = spec.containers[0].volume_mounts.as_ref().unwrap();
        assert_eq!(mounts[0].name, "kube-api-access-x7k2p");
        assert_eq!(
            mounts[0].mount_path,
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
    }

    #[test]
    fn env_variables_are_read_for_the_pod_name_only() {
        // b defines the variable twice: the kubelet uses the last definition, the pod's name.
        let pod = PodView::parse(
            r#"{"spec": {"containers": [
                {"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "COREDOG_POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}]},
                {"name": "b", "env": [{"name": "COREDOG_POD_NAME", "value": "fixed"}, {"name": "COREDOG_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
                {"name": "c", "env": []},
                {"name": "d", "env": null},
                {"name": "e", "env": [{"name": "COREDOG_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "COREDOG_POD_NAME", "value": "fixed"}]}
            ]}}"#,
        )
        .unwrap();
        let spec = pod.spec().unwrap().unwrap();
        let seen: Vec<_> = spec
            .containers
            .iter()
            .map(|c| (c.has_env_list, c.pod_name_env))
            .collect();
        assert_eq!(
            seen,
            [
                (true, Some(true)),
                (true, Some(true)),
                (true, None),
                (false, None),
                (true, Some(false))
            ]
        );
    }

    #[test]
    fn only_coredog_annotations_are_kept_and_escapes_are_decoded() {
        let pod = PodView::parse(
            r#"{"metadata": {"annotations": {"other": "{\"a\":1}", "coredog.io\/path": "\/core", "coredog.io/path": "/dumps", "coredog.io/inject": "true"}}}"#,
        )
        .unwrap();
        let own = pod.metadata.annotations.as_ref().unwrap();
        assert_eq!(own.len(), 3);
        assert_eq!(pod.metadata.annotation("coredog.io/path"), Some("/dumps"));
        assert_eq!(pod.metadata.annotation("coredog.io/inject"), Some("true"));
        assert_eq!(pod.metadata.annotation("other"), None);
        assert!(
            PodView::parse(r#"{"metadata": {}}"#)
                .unwrap()
                .metadata
                .annotations
                .is_none()
        );
    }

    #[test]
    fn the_spec_reads_the_same_before_and_after_the_metadata() {
        let annotated = r#""metadata": {"annotations": {"coredog.io/inject": "true"}}"#;
        let spec = r#""spec": {"containers": [{"name": "a", "env": []}], "volumes": [{"name": "v", "hostPath": {"path": "/x"}}]}"#;
        let broken = r#""spec": {"containers": [{"name": 5}]}"#;
        for (first, second) in [(annotated, spec), (spec, annotated)] {
            let text = format!("{{{first}, {second}}}");
            let pod = PodView::parse(&text).unwrap();
            let read = pod.spec().unwrap().unwrap();
            assert_eq!(read.containers[0].name, "a");
            assert!(read.containers[0].has_env_list);
            assert!(read.volumes.as_ref().unwrap()[0].host_path);
        }
        for (first, second) in [(annotated, broken), (broken, annotated)] {
            let text = format!("{{{first}, {second}}}");
            let pod = PodView::parse(&text).unwrap();
            assert_eq!(
                pod.spec().unwrap_err(),
                "a container's name is a number, not a string"
            );
        }
    }

    #[test]
    fn fields_of_the_wrong_type_are_named() {
        let pod = PodView::parse(r#"{"spec": {"containers": "not a list"}}"#).unwrap();
        assert_eq!(
            pod.spec().unwrap_err(),
            "spec.containers is a string, not a list"
        );
        let pod = PodView::parse(r#"{"spec": {"containers": [{"image": "x"}]}}"#).unwrap();
        assert_eq!(pod.spec().unwrap_err(), "a container has no name");
        assert_eq!(
            PodView::parse(r#"{"metadata": {"name": 1}}"#).unwrap_err(),
            "metadata.name is a number, not a string"
        );
        assert!(
            PodView::parse(r#"{"spec": {"containers": []}}"#)
                .unwrap()
                .spec()
                .unwrap()
                .is_some()
        );
        assert!(PodView::parse(r#"{}"#).unwrap().spec().unwrap().is_none());
    }
}
