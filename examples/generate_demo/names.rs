//! Fictional demographics vocabulary: common UK names, and streets, towns and
//! postcodes in the fictional county of Northshire.
//!
//! The postcode area `NS` is not a real UK postcode area, and telephone
//! numbers come from the Ofcom ranges reserved for drama (07700 900xxx and
//! 01632 960xxx), so no generated contact detail reaches a real person.

/// Common female given names, with a familiar short form where one is usual.
pub(crate) const FEMALE: &[(&str, Option<&str>)] = &[
    ("Margaret", Some("Peggy")),
    ("Susan", Some("Sue")),
    ("Patricia", Some("Pat")),
    ("Elizabeth", Some("Liz")),
    ("Catherine", Some("Kate")),
    ("Jennifer", Some("Jenny")),
    ("Deborah", Some("Debbie")),
    ("Dorothy", Some("Dot")),
    ("Jacqueline", Some("Jackie")),
    ("Sarah", None),
    ("Emma", None),
    ("Helen", None),
    ("Joan", None),
    ("Karen", None),
    ("Linda", None),
    ("Amanda", Some("Mandy")),
    ("Rachel", None),
    ("Sophie", None),
    ("Charlotte", Some("Lottie")),
    ("Olivia", None),
    ("Amelia", None),
    ("Hannah", None),
    ("Lucy", None),
    ("Priya", None),
    ("Aisha", None),
    ("Grace", None),
    ("Eileen", None),
    ("Valerie", Some("Val")),
];

/// Common male given names, with a familiar short form where one is usual.
pub(crate) const MALE: &[(&str, Option<&str>)] = &[
    ("William", Some("Bill")),
    ("Robert", Some("Bob")),
    ("James", Some("Jim")),
    ("Michael", Some("Mike")),
    ("Thomas", Some("Tom")),
    ("Christopher", Some("Chris")),
    ("Anthony", Some("Tony")),
    ("Edward", Some("Ted")),
    ("Richard", None),
    ("David", None),
    ("John", None),
    ("Peter", None),
    ("Stephen", Some("Steve")),
    ("Andrew", Some("Andy")),
    ("Mark", None),
    ("Paul", None),
    ("Gary", None),
    ("Daniel", Some("Dan")),
    ("Oliver", Some("Ollie")),
    ("Harry", None),
    ("George", None),
    ("Jack", None),
    ("Mohammed", None),
    ("Arjun", None),
    ("Kenneth", Some("Ken")),
    ("Ronald", Some("Ron")),
    ("Brian", None),
    ("Samuel", Some("Sam")),
];

/// Common UK family names.
pub(crate) const FAMILY: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood",
    "Jackson", "Clarke", "Patel", "Khan", "Lewis", "Harris", "Martin", "Cooper", "King", "Lee",
    "Baker", "Turner", "Hill", "Ward", "Morris", "Moore", "Clark", "Hughes", "Edwards", "Hussain",
    "Shaw", "Holmes", "Fletcher", "Marsh", "Atkinson", "Barker", "Booth", "Dixon", "Ellis",
    "Gibson", "Hudson", "Kaur", "Lloyd", "Mason", "Owen", "Palmer", "Quinn", "Rhodes", "Singh",
    "Stevens", "Webb", "Young",
];

/// Street names.
pub(crate) const STREETS: &[&str] = &[
    "Mill Lane",
    "Church Street",
    "Station Road",
    "High Street",
    "Park Avenue",
    "Victoria Road",
    "Queens Road",
    "Manor Close",
    "Orchard Way",
    "The Green",
    "Chapel Row",
    "Meadow View",
    "Riverside Walk",
    "Beech Grove",
    "Willow Crescent",
    "Kings Drive",
    "Ferry Lane",
    "Tannery Court",
    "Bridge Street",
    "Heather Bank",
    "Sycamore Road",
    "Lark Rise",
    "Foundry Yard",
    "Abbey Gardens",
];

/// Fictional Northshire towns and their postcode districts.
pub(crate) const TOWNS: &[(&str, &str)] = &[
    ("Riverside", "NS1"),
    ("Riverside", "NS2"),
    ("Northbridge", "NS3"),
    ("Ashcombe", "NS4"),
    ("Fellbeck", "NS5"),
    ("Hollinsford", "NS6"),
    ("Kettlewick", "NS7"),
    ("Stanmoor", "NS8"),
    ("Wyecliffe", "NS9"),
];

/// Letters allowed in the last two places of a UK postcode.
pub(crate) const INWARD_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

/// Day centres and respite homes run or commissioned by the council.
pub(crate) const CARE_SETTINGS: &[&str] = &[
    "Fellbeck Day Centre",
    "Riverside Resource Centre",
    "Kettlewick House",
    "Stanmoor Lodge",
];

/// Home-care agencies commissioned by the council.
pub(crate) const AGENCIES: &[&str] = &[
    "Northshire Home Support",
    "Brightwater Care",
    "Ashcombe Community Carers",
];
