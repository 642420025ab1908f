//! The OIP infer request and response bodies: parses and validates a JSON infer request against
//! a model's [`ModelMeta`] into a [`RawBatch`] (datatypes, shapes, broadcast of `[1]` inputs,
//! required inputs, requested outputs), and writes the JSON response. Every client mistake is an
//! [`InferError`] with a message naming the offending input or output, never a panic.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{Datatype, ModelMeta, RawBatch, Scores};

/// A client error found while reading an infer request (always HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferError(pub String);

#[derive(Deserialize)]
struct WireRequest {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    inputs: Vec<WireInput>,
    #[serde(default)]
    outputs: Option<Vec<WireOutputRequest>>,
}

#[derive(Deserialize)]
struct WireInput {
    name: String,
    shape: Vec<u64>,
    datatype: String,
    data: Value,
}

#[derive(Deserialize)]
struct WireOutputRequest {
    name: String,
}

/// A validated infer request, ready to be queued.
#[derive(Debug)]
pub struct ParsedRequest {
    /// The request `id`, echoed back (a string, or any JSON value the client sent).
    pub id: Option<Value>,
    /// The rows, one column per `meta.inputs`.
    pub batch: RawBatch,
    /// Indices into `meta.outputs` to answer with, in the requested order.
    pub outputs: Vec<usize>,
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}...", &s[..s.floor_char_boundary_compat(40)])
    } else {
        s
    }
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        if i >= self.len() {
            return self.len();
        }
        while !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// Flattens OIP `data` (flat, or nested row-major arrays) into `out`.
fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => {
            for item in items {
                flatten(item, out);
            }
        }
        other => out.push(other),
    }
}

fn convert(input: &str, dt: Datatype, i: usize, v: &Value) -> Result<String, InferError> {
    match dt {
        Datatype::Bytes => match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(InferError(format!(
                "input `{input}`: data[{i}] is not a string (BYTES), got {}",
                describe(other)
            ))),
        },
        Datatype::Int64 => match v {
            Value::Number(n) => {
                if let Some(x) = n.as_i64() {
                    Ok(x.to_string())
                } else {
                    Err(InferError(format!(
                        "input `{input}`: data[{i}] is not a 64-bit integer (INT64), got {n}"
                    )))
                }
            }
            other => Err(InferError(format!(
                "input `{input}`: data[{i}] is not an integer (INT64), got {}",
                describe(other)
            ))),
        },
        Datatype::Fp32 => match v {
            Value::Number(n) => {
                let x = n.as_f64().map(|x| x as f32);
                match x {
                    Some(x) if x.is_finite() => Ok(x.to_string()),
                    _ => Err(InferError(format!(
                        "input `{input}`: data[{i}] = {n} is not a finite FP32 value"
                    ))),
                }
            }
            other => Err(InferError(format!(
                "input `{input}`: data[{i}] is not a number (FP32), got {}",
                describe(other)
            ))),
        },
    }
}

/// Parses and validates an infer request body against `meta`.
pub fn parse_infer(body: &[u8], meta: &ModelMeta) -> Result<ParsedRequest, InferError> {
    let req: WireRequest = serde_json::from_slice(body)
        .map_err(|e| InferError(format!("malformed infer request JSON: {e}")))?;
    if req.inputs.is_empty() {
        return Err(InferError("empty request: no inputs".to_string()));
    }
    // Per meta input: (rows, values) as sent.
    let mut sent: Vec<Option<(usize, Vec<String>)>> = vec![None; meta.inputs.len()];
    let mut n = 0usize;
    for input in &req.inputs {
        let Some(idx) = meta.inputs.iter().position(|s| s.name == input.name) else {
            return Err(InferError(format!(
                "unknown input `{}`; accepted inputs: {}",
                input.name,
                names(meta.inputs.iter().map(|s| s.name.as_str()))
            )));
        };
        let spec = &meta.inputs[idx];
        if sent[idx].is_some() {
            return Err(InferError(format!("input `{}` is given twice", input.name)));
        }
        match Datatype::parse(&input.datatype) {
            Some(dt) if dt == spec.datatype => {}
            _ => {
                return Err(InferError(format!(
                    "input `{}`: expected datatype {}, got {:?}",
                    input.name, spec.datatype, input.datatype
                )))
            }
        }
        let Some((&rows, rest)) = input.shape.split_first() else {
            return Err(InferError(format!(
                "input `{}`: shape must have at least one dimension, got []",
                input.name
            )));
        };
        if let Some(d) = rest.iter().find(|&&d| d != 1) {
            return Err(InferError(format!(
                "input `{}`: shape {:?} has {d} values per row; only one value per row is accepted",
                input.name, input.shape
            )));
        }
        let mut flat = Vec::new();
        flatten(&input.data, &mut flat);
        if flat.len() as u64 != rows {
            return Err(InferError(format!(
                "input `{}`: shape {:?} holds {rows} values but data has {}",
                input.name,
                input.shape,
                flat.len()
            )));
        }
        let rows = flat.len();
        let values = flat
            .iter()
            .enumerate()
            .map(|(i, v)| convert(&input.name, spec.datatype, i, v))
            .collect::<Result<Vec<_>, _>>()?;
        n = n.max(rows);
        sent[idx] = Some((rows, values));
    }
    if n == 0 {
        return Err(InferError(
            "empty request: every input has 0 rows".to_string(),
        ));
    }
    for (spec, s) in meta.inputs.iter().zip(&sent) {
        match s {
            None if !spec.optional => {
                return Err(InferError(format!(
                    "missing required input `{}`; required inputs: {}",
                    spec.name,
                    names(
                        meta.inputs
                            .iter()
                            .filter(|s| !s.optional)
                            .map(|s| s.name.as_str())
                    )
                )))
            }
            Some((rows, _)) if *rows != n && *rows != 1 => {
                return Err(InferError(format!(
                    "inconsistent shapes: input `{}` has {rows} rows but the request has {n}; \
                     every input must have {n} rows or 1 (broadcast)",
                    spec.name
                )))
            }
            _ => {}
        }
    }
    let columns = sent
        .into_iter()
        .map(|s| {
            s.map(|(rows, mut values)| {
                if rows == 1 && n > 1 {
                    let v = values.pop().unwrap_or_default();
                    vec![v; n]
                } else {
                    values
                }
            })
        })
        .collect();
    let outputs = match req.outputs {
        None => (0..meta.outputs.len()).collect(),
        Some(list) if list.is_empty() => (0..meta.outputs.len()).collect(),
        Some(list) => list
            .iter()
            .map(|o| {
                meta.outputs
                    .iter()
                    .position(|t| *t == o.name)
                    .ok_or_else(|| {
                        InferError(format!(
                            "unknown output `{}`; accepted outputs: {}",
                            o.name,
                            names(meta.outputs.iter().map(String::as_str))
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(ParsedRequest {
        id: req.id,
        batch: RawBatch { n_rows: n, columns },
        outputs,
    })
}

#[derive(Serialize)]
struct WireResponse<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    outputs: Vec<WireOutput<'a>>,
}

#[derive(Serialize)]
struct WireOutput<'a> {
    name: &'a str,
    shape: [usize; 1],
    datatype: &'static str,
    data: &'a [f32],
}

/// Writes the OIP infer response for `scores` (task-major, this request's rows only).
pub fn write_response(
    model: &str,
    version: u64,
    meta: &ModelMeta,
    req: &ParsedRequest,
    scores: &Scores,
) -> Vec<u8> {
    let outputs = req
        .outputs
        .iter()
        .map(|&t| WireOutput {
            name: &meta.outputs[t],
            shape: [req.batch.n_rows],
            datatype: "FP32",
            data: &scores.tasks[t],
        })
        .collect();
    let resp = WireResponse {
        model_name: model,
        model_version: version.to_string(),
        id: req.id.as_ref(),
        outputs,
    };
    serde_json::to_vec(&resp).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InputSpec;

    fn meta() -> ModelMeta {
        let spec = |name: &str, datatype, optional| InputSpec {
            name: name.to_string(),
            datatype,
            optional,
        };
        ModelMeta {
            inputs: vec![
                spec("user_id", Datatype::Bytes, false),
                spec("item_id", Datatype::Int64, false),
                spec("price", Datatype::Fp32, true),
            ],
            outputs: vec!["click".into(), "like".into()],
            domains: vec!["a".into()],
            platform: "test".into(),
        }
    }

    fn err(body: &str) -> String {
        parse_infer(body.as_bytes(), &meta()).unwrap_err().0
    }

    #[test]
    fn broadcast_nested_and_formatting() {
        let body = r#"{"id":"r1","inputs":[
            {"name":"user_id","shape":[1],"datatype":"BYTES","data":["u"]},
            {"name":"item_id","shape":[3,1],"datatype":"INT64","data":[[1],[2],[3]]},
            {"name":"price","shape":[3],"datatype":"FP32","data":[0.5, 1, 2.25]}],
            "outputs":[{"name":"like"}]}"#;
        let p = parse_infer(body.as_bytes(), &meta()).unwrap();
        assert_eq!(p.batch.n_rows, 3);
        assert_eq!(p.batch.columns[0], Some(vec!["u".to_string(); 3]));
        assert_eq!(
            p.batch.columns[1],
            Some(vec!["1".into(), "2".into(), "3".into()])
        );
        assert_eq!(
            p.batch.columns[2],
            Some(vec!["0.5".into(), "1".into(), "2.25".into()])
        );
        assert_eq!(p.outputs, vec![1]);
        assert_eq!(p.id, Some(Value::String("r1".into())));
    }

    #[test]
    fn optional_input_absent() {
        let body = r#"{"inputs":[
            {"name":"user_id","shape":[2],"datatype":"BYTES","data":["u","v"]},
            {"name":"item_id","shape":[1],"datatype":"INT64","data":[7]}]}"#;
        let p = parse_infer(body.as_bytes(), &meta()).unwrap();
        assert_eq!(p.batch.columns[2], None);
        assert_eq!(p.outputs, vec![0, 1]);
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(err("{").starts_with("malformed infer request JSON"));
        assert!(err(r#"{"inputs":[]}"#).starts_with("empty request"));
        let e = err(r#"{"inputs":[{"name":"zzz","shape":[1],"datatype":"BYTES","data":["u"]}]}"#);
        assert!(e.contains("unknown input `zzz`") && e.contains("`user_id`, `item_id`, `price`"));
        let e =
            err(r#"{"inputs":[{"name":"item_id","shape":[1],"datatype":"BYTES","data":["u"]}]}"#);
        assert_eq!(e, "input `item_id`: expected datatype INT64, got \"BYTES\"");
        let e = err(r#"{"inputs":[{"name":"item_id","shape":[2],"datatype":"INT64","data":[1]}]}"#);
        assert_eq!(
            e,
            "input `item_id`: shape [2] holds 2 values but data has 1"
        );
        let e =
            err(r#"{"inputs":[{"name":"item_id","shape":[1],"datatype":"INT64","data":[1.5]}]}"#);
        assert!(e.contains("data[0] is not a 64-bit integer"), "{e}");
        let e = err(r#"{"inputs":[{"name":"price","shape":[1],"datatype":"FP32","data":[1e39]}]}"#);
        assert!(e.contains("not a finite FP32"), "{e}");
        let e = err(r#"{"inputs":[{"name":"item_id","shape":[1],"datatype":"INT64","data":[1]}]}"#);
        assert!(e.starts_with("missing required input `user_id`"), "{e}");
        let e = err(r#"{"inputs":[
            {"name":"user_id","shape":[2],"datatype":"BYTES","data":["u","v"]},
            {"name":"item_id","shape":[3],"datatype":"INT64","data":[1,2,3]}]}"#);
        assert!(
            e.starts_with("inconsistent shapes: input `user_id` has 2 rows"),
            "{e}"
        );
        let e = err(r#"{"inputs":[
            {"name":"user_id","shape":[0],"datatype":"BYTES","data":[]}]}"#);
        assert!(e.starts_with("empty request"), "{e}");
        let e = err(r#"{"inputs":[
            {"name":"user_id","shape":[1],"datatype":"BYTES","data":["u"]},
            {"name":"item_id","shape":[1],"datatype":"INT64","data":[1]}],
            "outputs":[{"name":"buy"}]}"#);
        assert_eq!(e, "unknown output `buy`; accepted outputs: `click`, `like`");
    }
}
