//! The Nexmark event stream (Person, Auction, Bid in the pattern 1 : 3 : 46 of every 50
//! events), as Apache Beam's and Flink's generators make it: hot auctions (half of all bids),
//! hot bidders and sellers (three quarters), 100 auctions in flight, 1000 active people, ids
//! from 1000, categories 10–14, prices `round(10^(U·6) · 100)`, event time
//! `base + eventNo × 1e6 / rate` µs, and an `extra` string that pads each event to its target
//! size (person 200 B, auction 500 B, bid 100 B) ± 20 %, counted as the reference generator
//! counts (8 bytes per number, plus string bytes).
//!
//! Event `n` depends only on the seed and `n`, so any slice of the stream can be made alone.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, StructArray,
    TimestampMillisecondArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::error::Result;

use super::{Random, RowGenerator};

const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const TOTAL_PROPORTION: u64 = 50;
const FIRST_PERSON_ID: u64 = 1000;
const FIRST_AUCTION_ID: u64 = 1000;
const FIRST_CATEGORY_ID: u64 = 10;
const NUM_CATEGORIES: u64 = 5;
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_SELLER_RATIO: u64 = 4;
const HOT_BIDDER_RATIO: u64 = 4;
/// Hot ids are multiples of this (of the base-0 id).
const HOT_ID_STRIDE: u64 = 100;
const IN_FLIGHT_AUCTIONS: u64 = 100;
const ACTIVE_PEOPLE: u64 = 1000;
const ID_LEAD: u64 = 10;
/// 2024-01-01T00:00:00Z, the event time of event 0.
pub const BASE_TIME_MS: i64 = 1_704_067_200_000;
/// Target JSON sizes of the events.
pub const PERSON_BYTES: usize = 200;
/// Target JSON size of an auction.
pub const AUCTION_BYTES: usize = 500;
/// Target JSON size of a bid.
pub const BID_BYTES: usize = 100;

const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];

/// Which kind an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A new person (event_type 0).
    Person,
    /// A new auction (event_type 1).
    Auction,
    /// A bid (event_type 2).
    Bid,
}

/// The kind of event number `n`.
pub fn kind_of(n: u64) -> EventKind {
    let offset = n % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        EventKind::Person
    } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
        EventKind::Auction
    } else {
        EventKind::Bid
    }
}

fn last_base0_person_id(n: u64) -> u64 {
    let epoch = n / TOTAL_PROPORTION;
    let offset = n % TOTAL_PROPORTION;
    let offset = if offset >= PERSON_PROPORTION {
        PERSON_PROPORTION - 1
    } else {
        offset
    };
    epoch * PERSON_PROPORTION + offset
}

fn last_base0_auction_id(n: u64) -> u64 {
    let mut epoch = n / TOTAL_PROPORTION;
    let mut offset = n % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        if epoch == 0 {
            return 0;
        }
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

fn next_base0_person_id(n: u64, rnd: &mut Random) -> u64 {
    let people = last_base0_person_id(n) + 1;
    let active = people.min(ACTIVE_PEOPLE);
    (people - active + rnd.next_below(active + ID_LEAD)).min(people - 1)
}

fn next_base0_auction_id(n: u64, rnd: &mut Random) -> u64 {
    let last = last_base0_auction_id(n);
    let first = last.saturating_sub(IN_FLIGHT_AUCTIONS);
    (first + rnd.next_below(last - first + 1 + ID_LEAD)).min(last)
}

fn next_price(rnd: &mut Random) -> i64 {
    (10f64.powf(rnd.next_f64() * 6.0) * 100.0).round() as i64
}

/// Chooses the `extra` string so the event is `target` bytes ± 20 %, given its size without
/// `extra`. Sizes count as Nexmark's reference generator counts them: 8 bytes per number or
/// timestamp, plus the bytes of each string. (Events are larger as JSON, which adds field names.)
fn extra(rnd: &mut Random, size_without_extra: usize, target: usize) -> String {
    let delta = target / 5;
    let desired = target - delta + rnd.next_below(2 * delta as u64) as usize;
    rnd.letters(desired.saturating_sub(size_without_extra))
}

/// The Nexmark generator: `events` events, `rate` events per second of event time.
#[derive(Debug, Clone)]
pub struct Nexmark {
    events: u64,
    rate: u64,
    seed: u64,
    schema: SchemaRef,
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// The fields of a person.
pub fn person_fields() -> Fields {
    Fields::from(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("emailAddress", DataType::Utf8, true),
        Field::new("creditCard", DataType::Utf8, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("state", DataType::Utf8, true),
        Field::new("dateTime", timestamp(), true),
        Field::new("extra", DataType::Utf8, true),
    ])
}

/// The fields of an auction.
pub fn auction_fields() -> Fields {
    Fields::from(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("itemName", DataType::Utf8, true),
        Field::new("description", DataType::Utf8, true),
        Field::new("initialBid", DataType::Int64, true),
        Field::new("reserve", DataType::Int64, true),
        Field::new("dateTime", timestamp(), true),
        Field::new("expires", timestamp(), true),
        Field::new("seller", DataType::Int64, true),
        Field::new("category", DataType::Int64, true),
        Field::new("extra", DataType::Utf8, true),
    ])
}

/// The fields of a bid.
pub fn bid_fields() -> Fields {
    Fields::from(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("url", DataType::Utf8, true),
        Field::new("dateTime", timestamp(), true),
        Field::new("extra", DataType::Utf8, true),
    ])
}

impl Nexmark {
    /// A stream of `events` events at `rate` per second from `seed`.
    pub fn new(events: u64, rate: u64, seed: u64) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_type", DataType::Int32, false),
            Field::new("person", DataType::Struct(person_fields()), true),
            Field::new("auction", DataType::Struct(auction_fields()), true),
            Field::new("bid", DataType::Struct(bid_fields()), true),
        ]));
        Self {
            events,
            rate: rate.max(1),
            seed,
            schema,
        }
    }

    fn event_time(&self, n: u64) -> i64 {
        BASE_TIME_MS + ((n as u128 * 1_000_000 / self.rate as u128) / 1000) as i64
    }
}

/// Where a struct field's values are: the n-th integer, timestamp (kept with the integers) or
/// string of an event.
#[derive(Clone, Copy)]
enum Slot {
    Int(usize),
    Time(usize),
    Text(usize),
}

/// Column builders for one struct, null where the event is of another kind.
#[derive(Default)]
struct Columns {
    ints: Vec<Vec<Option<i64>>>,
    strings: Vec<Vec<Option<String>>>,
    valid: Vec<bool>,
}

impl Columns {
    fn new(ints: usize, strings: usize) -> Self {
        Columns {
            ints: vec![vec![]; ints],
            strings: vec![vec![]; strings],
            valid: vec![],
        }
    }

    /// Adds one event's values, or nulls when the event is of another kind.
    fn push(&mut self, event: Option<(Vec<i64>, Vec<String>)>) {
        self.valid.push(event.is_some());
        let (ints, strings) = event.map_or((None, None), |(i, s)| (Some(i), Some(s)));
        for (i, column) in self.ints.iter_mut().enumerate() {
            column.push(ints.as_ref().map(|v| v[i]));
        }
        let mut strings = strings.map(Vec::into_iter);
        for column in &mut self.strings {
            column.push(strings.as_mut().and_then(Iterator::next));
        }
    }

    /// Builds the struct whose fields come, in order, from the `layout` slots.
    fn finish(self, fields: Fields, layout: &[Slot]) -> Result<ArrayRef> {
        let columns: Vec<ArrayRef> = layout
            .iter()
            .map(|slot| -> ArrayRef {
                match *slot {
                    Slot::Time(i) => {
                        Arc::new(TimestampMillisecondArray::from(self.ints[i].clone()))
                    }
                    Slot::Int(i) => Arc::new(Int64Array::from(self.ints[i].clone())),
                    Slot::Text(i) => Arc::new(StringArray::from(self.strings[i].clone())),
                }
            })
            .collect();
        Ok(Arc::new(StructArray::try_new(
            fields,
            columns,
            Some(NullBuffer::from(self.valid)),
        )?))
    }
}

impl RowGenerator for Nexmark {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn rows(&self) -> u64 {
        self.events
    }

    fn batch(&self, start: u64, end: u64) -> Result<RecordBatch> {
        let mut kinds = Vec::with_capacity((end - start) as usize);
        let mut people = Columns::new(2, 6);
        let mut auctions = Columns::new(7, 4);
        let mut bids = Columns::new(4, 3);
        for n in start..end {
            let mut rnd = Random::for_row(self.seed, n);
            let time = self.event_time(n);
            let kind = kind_of(n);
            kinds.push(kind as i32);
            people.push((kind == EventKind::Person).then(|| self.person(n, time, &mut rnd)));
            auctions.push((kind == EventKind::Auction).then(|| self.auction(n, time, &mut rnd)));
            bids.push((kind == EventKind::Bid).then(|| self.bid(n, time, &mut rnd)));
        }
        use Slot::{Int, Text, Time};
        let person = people.finish(
            person_fields(),
            &[
                Int(0),
                Text(0),
                Text(1),
                Text(2),
                Text(3),
                Text(4),
                Time(1),
                Text(5),
            ],
        )?;
        let auction = auctions.finish(
            auction_fields(),
            &[
                Int(0),
                Text(0),
                Text(1),
                Int(1),
                Int(2),
                Time(3),
                Time(4),
                Int(5),
                Int(6),
                Text(2),
            ],
        )?;
        let bid = bids.finish(
            bid_fields(),
            &[Int(0), Int(1), Int(2), Text(0), Text(1), Time(3), Text(2)],
        )?;
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![Arc::new(Int32Array::from(kinds)), person, auction, bid],
        )?)
    }
}

impl Nexmark {
    /// (id, dateTime), (name, emailAddress, creditCard, city, state, extra).
    fn person(&self, n: u64, time: i64, rnd: &mut Random) -> (Vec<i64>, Vec<String>) {
        let id = (last_base0_person_id(n) + FIRST_PERSON_ID) as i64;
        let name = format!(
            "{} {}",
            FIRST_NAMES[rnd.next_below(FIRST_NAMES.len() as u64) as usize],
            LAST_NAMES[rnd.next_below(LAST_NAMES.len() as u64) as usize]
        );
        let email = format!("{}@{}.com", rnd.letters(7), rnd.letters(5));
        let card = (0..4)
            .map(|_| format!("{:04}", rnd.next_below(10_000)))
            .collect::<Vec<_>>()
            .join(" ");
        let city = CITIES[rnd.next_below(CITIES.len() as u64) as usize].to_string();
        let state = STATES[rnd.next_below(STATES.len() as u64) as usize].to_string();
        let len = 2 * 8 + name.len() + email.len() + card.len() + city.len() + state.len();
        let extra = extra(rnd, len, PERSON_BYTES);
        (vec![id, time], vec![name, email, card, city, state, extra])
    }

    /// (id, initialBid, reserve, dateTime, expires, seller, category), (itemName, description, extra).
    fn auction(&self, n: u64, time: i64, rnd: &mut Random) -> (Vec<i64>, Vec<String>) {
        let id = (last_base0_auction_id(n) + FIRST_AUCTION_ID) as i64;
        let seller = if rnd.next_below(HOT_SELLER_RATIO) > 0 {
            (last_base0_person_id(n) / HOT_ID_STRIDE) * HOT_ID_STRIDE
        } else {
            next_base0_person_id(n, rnd)
        } + FIRST_PERSON_ID;
        let category = (FIRST_CATEGORY_ID + rnd.next_below(NUM_CATEGORIES)) as i64;
        let initial_bid = next_price(rnd);
        let reserve = initial_bid + next_price(rnd);
        let expires = time + 10_000 + rnd.next_below(20_000) as i64;
        let item = rnd.letters(20);
        let description = rnd.letters(100);
        let len = 7 * 8 + item.len() + description.len();
        let extra = extra(rnd, len, AUCTION_BYTES);
        (
            vec![
                id,
                initial_bid,
                reserve,
                time,
                expires,
                seller as i64,
                category,
            ],
            vec![item, description, extra],
        )
    }

    /// (auction, bidder, price, dateTime), (channel, url, extra).
    fn bid(&self, n: u64, time: i64, rnd: &mut Random) -> (Vec<i64>, Vec<String>) {
        let auction = if rnd.next_below(HOT_AUCTION_RATIO) > 0 {
            (last_base0_auction_id(n) / HOT_ID_STRIDE) * HOT_ID_STRIDE
        } else {
            next_base0_auction_id(n, rnd)
        } + FIRST_AUCTION_ID;
        let bidder = if rnd.next_below(HOT_BIDDER_RATIO) > 0 {
            (last_base0_person_id(n) / HOT_ID_STRIDE) * HOT_ID_STRIDE + 1
        } else {
            next_base0_person_id(n, rnd)
        } + FIRST_PERSON_ID;
        let price = next_price(rnd);
        let channel = CHANNELS[rnd.next_below(CHANNELS.len() as u64) as usize].to_string();
        let url = format!(
            "https://www.nexmark.com/{}/item.htm?query=1",
            rnd.letters(5)
        );
        let len = 4 * 8 + channel.len() + url.len();
        let extra = extra(rnd, len, BID_BYTES);
        (
            vec![auction as i64, bidder as i64, price, time],
            vec![channel, url, extra],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type};

    fn generate(events: u64) -> RecordBatch {
        Nexmark::new(events, 10_000, 7).batch(0, events).unwrap()
    }

    fn field<'a>(batch: &'a RecordBatch, column: &str, name: &str) -> &'a ArrayRef {
        batch
            .column_by_name(column)
            .unwrap()
            .as_struct()
            .column_by_name(name)
            .unwrap()
    }

    #[test]
    fn the_pattern_of_fifty_and_ids() {
        let batch = generate(10_000);
        let kinds = batch.column(0).as_primitive::<Int32Type>();
        let count = |k: i32| kinds.iter().filter(|v| *v == Some(k)).count();
        assert_eq!((count(0), count(1), count(2)), (200, 600, 9200));
        let person_ids = field(&batch, "person", "id").as_primitive::<Int64Type>();
        let ids: Vec<i64> = person_ids.iter().flatten().collect();
        assert_eq!(ids.first(), Some(&1000));
        assert_eq!(ids.last(), Some(&1199), "person ids count up from 1000");
        let auction_ids: Vec<i64> = field(&batch, "auction", "id")
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .collect();
        assert_eq!((auction_ids[0], *auction_ids.last().unwrap()), (1000, 1599));
        let categories: Vec<i64> = field(&batch, "auction", "category")
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .collect();
        assert!(categories.iter().all(|c| (10..=14).contains(c)));
        let states = field(&batch, "person", "state").as_string::<i32>();
        assert!(states.iter().flatten().all(|s| STATES.contains(&s)));
        // Bids only name auctions and people that exist by then.
        let bid_auctions = field(&batch, "bid", "auction").as_primitive::<Int64Type>();
        assert!(
            bid_auctions
                .iter()
                .flatten()
                .all(|a| (1000..1600).contains(&a))
        );
    }

    #[test]
    fn hot_auctions_bidders_and_prices() {
        let events = 50_000;
        let batch = generate(events);
        let auctions = field(&batch, "bid", "auction").as_primitive::<Int64Type>();
        let bidders = field(&batch, "bid", "bidder").as_primitive::<Int64Type>();
        let (mut bids, mut hot_auction, mut hot_bidder) = (0.0, 0.0, 0.0);
        for n in 0..events {
            let i = n as usize;
            if auctions.is_null(i) {
                continue;
            }
            bids += 1.0;
            let hot_a =
                (last_base0_auction_id(n) / HOT_ID_STRIDE) * HOT_ID_STRIDE + FIRST_AUCTION_ID;
            let hot_b =
                (last_base0_person_id(n) / HOT_ID_STRIDE) * HOT_ID_STRIDE + 1 + FIRST_PERSON_ID;
            hot_auction += f64::from(auctions.value(i) as u64 == hot_a);
            hot_bidder += f64::from(bidders.value(i) as u64 == hot_b);
        }
        let (a, b) = (hot_auction / bids, hot_bidder / bids);
        assert!(
            (0.48..0.56).contains(&a),
            "half of the bids go to a hot auction: {a}"
        );
        assert!(
            (0.73..0.80).contains(&b),
            "three quarters come from a hot bidder: {b}"
        );
        let prices = field(&batch, "bid", "price").as_primitive::<Int64Type>();
        let logs: Vec<f64> = prices
            .iter()
            .flatten()
            .map(|p| (p as f64).log10())
            .collect();
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        assert!(
            (4.9..5.1).contains(&mean),
            "log10(price) is uniform on [2, 8]: mean {mean}"
        );
        assert!(logs.iter().all(|l| (1.99..=8.0).contains(l)));
    }

    #[test]
    fn sizes_match_the_targets() {
        let batch = generate(5_000);
        for (column, target) in [
            ("person", PERSON_BYTES),
            ("auction", AUCTION_BYTES),
            ("bid", BID_BYTES),
        ] {
            let structs = batch.column_by_name(column).unwrap().as_struct();
            let mut sizes = vec![0usize; structs.len()];
            for child in structs.columns() {
                for (row, size) in sizes.iter_mut().enumerate() {
                    *size += match child.as_string_opt::<i32>() {
                        Some(strings) => strings.value(row).len(),
                        None => 8,
                    };
                }
            }
            let sizes: Vec<usize> = (0..structs.len())
                .filter(|r| structs.is_valid(*r))
                .map(|r| sizes[r])
                .collect();
            let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
            assert!(
                (mean - target as f64).abs() < target as f64 * 0.05,
                "{column}: mean {mean} B, target {target} B"
            );
            let (lo, hi) = (target as f64 * 0.8, target as f64 * 1.2);
            assert!(
                sizes.iter().all(|s| (lo..hi).contains(&(*s as f64))),
                "{column}: sizes within ±20 %"
            );
        }
    }

    #[test]
    fn deterministic_from_the_seed_in_any_split() {
        let g = Nexmark::new(3_000, 1_000, 42);
        let whole = g.batch(0, 3_000).unwrap();
        let parts = [g.batch(0, 1_234).unwrap(), g.batch(1_234, 3_000).unwrap()];
        let joined = arrow::compute::concat_batches(&whole.schema(), &parts).unwrap();
        assert_eq!(whole, joined);
        assert_eq!(
            whole,
            Nexmark::new(3_000, 1_000, 42).batch(0, 3_000).unwrap()
        );
        assert_ne!(
            whole,
            Nexmark::new(3_000, 1_000, 43).batch(0, 3_000).unwrap()
        );
    }

    #[test]
    fn event_time_follows_the_rate() {
        let g = Nexmark::new(10, 4, 0);
        assert_eq!(g.event_time(0), BASE_TIME_MS);
        assert_eq!(g.event_time(1), BASE_TIME_MS + 250);
        assert_eq!(g.event_time(8), BASE_TIME_MS + 2_000);
    }
}
