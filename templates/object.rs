{#- The serde impls of a struct that is a JSON object, written out field by field rather than
    derived: see `codegen_runtime::__private::ObjectReader` for why. -#}
{%- macro serde_impls(name, fields, rest, deprecated) %}
{% if deprecated %}
#[allow(deprecated)]
{%- endif %}
impl serde::Serialize for {{ name }} {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
{%- if fields.is_empty() && !rest %}
        let object = codegen_runtime::__private::ObjectWriter::new(serializer)?;
{%- else %}
        let mut object = codegen_runtime::__private::ObjectWriter::new(serializer)?;
{%- endif %}
{%- for f in fields.iter() %}
        object.{{ f.write }}({{ f.key }}, &self.{{ f.name }})?;
{%- endfor %}
{%- if rest %}
        object.rest(&self.additional_properties)?;
{%- endif %}
        object.end()
    }
}
{% if deprecated %}
#[allow(deprecated)]
{%- endif %}
impl<'de> serde::Deserialize<'de> for {{ name }} {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
{%- if fields.is_empty() && !rest %}
        codegen_runtime::__private::ObjectReader::new(deserializer)?;
        Ok(Self {})
{%- else %}
{%- if fields.is_empty() %}
        let object = codegen_runtime::__private::ObjectReader::new(deserializer)?;
{%- else %}
        let mut object = codegen_runtime::__private::ObjectReader::new(deserializer)?;
{%- endif %}
        Ok(Self {
{%- for f in fields.iter() %}
            {{ f.name }}: object.{{ f.read }}({{ f.key }})?,
{%- endfor %}
{%- if rest %}
            additional_properties: object.rest()?,
{%- endif %}
        })
{%- endif %}
    }
}
{%- endmacro %}
