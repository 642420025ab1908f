//! `string_enum!`: a closed set of names accepted by one config key. It gives the enum its
//! canonical names (what configs, reports and `config.resolved.json` write), parsing with the
//! accepted values in the error, and serde (de)serialization as those strings.

/// Declares a `Copy` enum whose values are written as strings; see the module docs. Every crate
/// with a closed set of config values uses it (the using crate needs `serde`).
#[macro_export]
macro_rules! string_enum {
    (
        $(#[$m:meta])*
        $vis:vis enum $T:ident : $key:literal {
            $( $(#[$vm:meta])* $V:ident = $s:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $T {
            $( $(#[$vm])* $V ),+
        }

        impl $T {
            /// Every value, in the order the accepted names are listed.
            pub const ALL: &[$T] = &[$($T::$V),+];
            /// The config key whose values these are (named in parse errors).
            pub const KEY: &str = $key;

            /// The canonical name: what configs, reports and `config.resolved.json` write.
            pub fn name(self) -> &'static str {
                match self {
                    $($T::$V => $s),+
                }
            }

            /// Other spellings that parse to this value.
            pub fn aliases(self) -> &'static [&'static str] {
                match self {
                    $($T::$V => &[$($alias),*]),+
                }
            }

            /// The accepted names, comma-separated (aliases in parentheses).
            pub fn accepted() -> String {
                Self::ALL
                    .iter()
                    .map(|v| match v.aliases() {
                        [] => v.name().to_string(),
                        a => format!("{} (alias {})", v.name(), a.join(", ")),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }

        impl std::str::FromStr for $T {
            type Err = $crate::DataError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s $(| $alias)* => Ok($T::$V),)+
                    _ => Err($crate::DataError::Config(format!(
                        "{}: unknown value {s:?}; expected one of: {}",
                        $key,
                        Self::accepted()
                    ))),
                }
            }
        }

        impl std::fmt::Display for $T {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl serde::Serialize for $T {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $T {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use crate::string_enum;
