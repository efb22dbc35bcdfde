//! Field serializers shared by the core's `Serialize` impls, whose output is the shape of the
//! Python `to_dict()` bodies (the bindings convert it with one generic serde → Python step).

use serde::{Serialize, Serializer};

/// Named values as a map (`{"code": 0.9}`), in their stored (sorted) order.
pub fn pairs_as_map<S: Serializer, V: Serialize>(
    pairs: &[(String, V)],
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// NaN ("no value") as `None`/`null`.
pub fn nan_as_none<S: Serializer>(
    value: &f64,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    Some(*value).filter(|v| !v.is_nan()).serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct V {
        #[serde(serialize_with = "nan_as_none")]
        v: f64,
        #[serde(serialize_with = "pairs_as_map")]
        levels: Vec<(String, f64)>,
    }

    #[test]
    fn nan_is_null_and_pairs_are_a_map_in_order() {
        let v = V {
            v: f64::NAN,
            levels: vec![("b".into(), 0.5), ("a".into(), 1.0)],
        };
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(text, r#"{"v":null,"levels":{"b":0.5,"a":1.0}}"#);
        let v = V {
            v: 1.5,
            levels: vec![],
        };
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"v":1.5,"levels":{}}"#
        );
    }
}
