//! The price list: `prices.json` in this crate, compiled in and validated at start.
//! Every price is an integer number of minor units (cents) of its currency: VM plans per
//! hour, VMs of explicit size per vCPU-hour and GB-hour of memory, pod products per month.

use std::collections::BTreeMap;

use serde::Deserialize;

const BUILTIN: &str = include_str!("../prices.json");

/// Why a price list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("the price list is not valid JSON of the expected shape: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("price list: {0}")]
    Invalid(String),
}

/// All prices, by currency.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceList {
    pub version: u32,
    pub currencies: BTreeMap<String, Prices>,
}

/// The prices in one currency.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub vm_plans_per_hour: BTreeMap<String, i64>,
    pub custom_per_hour: CustomPrices,
    /// `product/variant` → per month.
    pub pods_per_month: BTreeMap<String, i64>,
}

/// VMs of explicit size.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPrices {
    pub vcpu: i64,
    pub memory_gb: i64,
}

impl PriceList {
    pub fn builtin() -> Result<Self, PriceError> {
        Self::from_json(BUILTIN)
    }

    pub fn from_json(text: &str) -> Result<Self, PriceError> {
        let list: Self = serde_json::from_str(text)?;
        for (currency, prices) in &list.currencies {
            berth_schemas::billing::validate_currency(currency)
                .map_err(|r| PriceError::Invalid(r.message))?;
            let all = prices
                .vm_plans_per_hour
                .values()
                .chain(prices.pods_per_month.values())
                .chain([
                    &prices.custom_per_hour.vcpu,
                    &prices.custom_per_hour.memory_gb,
                ]);
            if all.into_iter().any(|price| *price < 0) {
                return Err(PriceError::Invalid(format!(
                    "{currency}: prices cannot be negative"
                )));
            }
            for plan in ["small", "medium", "large"] {
                if !prices.vm_plans_per_hour.contains_key(plan) {
                    return Err(PriceError::Invalid(format!(
                        "{currency}: no price for the {plan} plan"
                    )));
                }
            }
        }
        Ok(list)
    }

    pub fn prices(&self, currency: &str) -> Option<&Prices> {
        self.currencies.get(currency)
    }
}

impl Prices {
    /// Per hour of a VM of `plan` (`custom`: by its size).
    pub fn vm_per_hour(&self, plan: &str, vcpus: u32, memory_mb: u32) -> i64 {
        self.vm_plans_per_hour
            .get(plan)
            .copied()
            .unwrap_or_else(|| {
                i64::from(vcpus) * self.custom_per_hour.vcpu
                    + u64::from(memory_mb).div_ceil(1024) as i64 * self.custom_per_hour.memory_gb
            })
    }

    /// Per month of a pod product, if it is sold in this currency.
    pub fn pod_per_month(&self, product: &str, variant: &str) -> Option<i64> {
        self.pods_per_month
            .get(&format!("{product}/{variant}"))
            .copied()
    }
}

/// `per_unit × part / whole`, rounded half up, in integer arithmetic (i128, no floats).
pub fn prorate(per_unit: i64, part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    let numerator = i128::from(per_unit) * i128::from(part);
    let whole = i128::from(whole);
    let rounded = (2 * numerator + whole).div_euclid(2 * whole);
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_price_list_is_valid_and_priced_in_minor_units() {
        let list = PriceList::builtin().unwrap();
        let eur = list.prices("EUR").unwrap();
        assert_eq!(eur.vm_per_hour("medium", 2, 4096), 4);
        assert_eq!(eur.vm_per_hour("custom", 3, 1536), 3 + 2);
        assert_eq!(eur.pod_per_month("wordpress", "free"), Some(0));
        assert_eq!(eur.pod_per_month("joomla", "basic"), None);
    }

    #[test]
    fn proration_rounds_half_up_without_floats() {
        assert_eq!(prorate(4, 12_300, 3600), 14); // 3h25m at 4 per hour = 13.67
        assert_eq!(prorate(1, 1800, 3600), 1); // half a cent rounds up
        assert_eq!(prorate(1, 1799, 3600), 0);
        assert_eq!(prorate(900, 15 * 86_400, 30 * 86_400), 450);
        assert_eq!(prorate(i64::MAX, 2, 2), i64::MAX);
    }

    #[test]
    fn negative_prices_and_missing_plans_are_refused() {
        let negative = BUILTIN.replacen("\"small\": 1", "\"small\": -1", 1);
        assert!(PriceList::from_json(&negative).is_err());
        let missing = BUILTIN.replacen("\"large\": 8", "\"huge\": 8", 1);
        assert!(PriceList::from_json(&missing).is_err());
        let float = BUILTIN.replacen("\"small\": 1", "\"small\": 1.5", 1);
        assert!(PriceList::from_json(&float).is_err(), "no fractional money");
    }
}
