"""Reference data for the synthetic world: names, places, field offices, courts and care providers.

Everything here is invented for testing (no real person, sponsor, shelter or street address); only the
ERO field-office names and the immigration-court cities follow the public lists in the domain notes.
"""

from __future__ import annotations

# Country of birth and its weight among arriving children (roughly the FY2019-2024 mix).
COUNTRIES: list[tuple[str, float]] = [
    ("Guatemala", 44.0),
    ("Honduras", 25.0),
    ("El Salvador", 12.0),
    ("Mexico", 5.0),
    ("Ecuador", 4.0),
    ("Nicaragua", 2.5),
    ("Venezuela", 2.0),
    ("Colombia", 2.0),
    ("India", 1.0),
    ("China", 1.0),
    ("Haiti", 0.8),
    ("Brazil", 0.7),
]

HISPANIC_FIRST_M = [
    "José", "Juan", "Carlos", "Luis", "Jorge", "Kevin", "Brayan", "Anderson", "Wilmer", "Edwin", "Jefferson",
    "Yeferson", "Óscar", "Marvin", "Erick", "Josué", "Mario", "Pedro", "Santiago", "Diego", "Ángel", "Cristian",
    "Elmer", "Byron", "Henry", "Franklin", "Nelson", "Darwin", "Selvin", "Walter", "Josías", "Dilan",
]
HISPANIC_FIRST_F = [
    "María", "Ana", "Sofía", "Dulce", "Yesenia", "Karla", "Heidy", "Angélica", "Daniela", "Jennifer",
    "Yuliana", "Glenda", "Marisol", "Lesly", "Alejandra", "Fernanda", "Dayana", "Mélany", "Nayeli", "Wendy",
    "Keily", "Rosa", "Sindy", "Gabriela", "Brenda", "Ingrid", "Jimena", "Valeria", "Lucía", "Alison",
]
HISPANIC_SURNAMES = [
    "García", "López", "Hernández", "Pérez", "Martínez", "González", "Rodríguez", "Ramírez", "Cruz",
    "Morales", "Reyes", "Gómez", "Díaz", "Flores", "Ortiz", "Castillo", "Vásquez", "Mejía", "Chávez",
    "Álvarez", "Juárez", "Méndez", "Aguilar", "Ramos", "Santos", "Orellana", "Pineda", "Escobar",
    "Tzul", "Xicará", "Cux", "Pop", "Caal", "Coc", "Ixcoy", "Batz", "Us", "Quiej", "Ajú", "Bonilla",
    "Zelaya", "Maldonado", "Rivera", "Sánchez", "Funes", "Amaya", "Portillo", "Argueta", "Guevara",
]
OTHER_NAMES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "India": (["Arjun", "Harpreet", "Gurpreet", "Rahul", "Amandeep"], ["Priya", "Simran", "Anjali", "Neha"],
              ["Singh", "Kaur", "Patel", "Sharma", "Kumar"]),
    "China": (["Wei", "Hao", "Jun", "Zhi Hao"], ["Mei", "Xiu Ying", "Li Na", "Yan"],
              ["Zhang", "Wang", "Chen", "Liu", "Lin"]),
    "Haiti": (["Jean", "Wilson", "Peterson", "Junior"], ["Marie", "Nadège", "Roseline", "Fabienne"],
              ["Joseph", "Pierre", "Jean-Baptiste", "Louis", "Charles"]),
    "Brazil": (["João", "Gabriel", "Lucas", "Matheus"], ["Ana Clara", "Beatriz", "Larissa", "Júlia"],
               ["Silva", "Santos", "Oliveira", "Souza", "Ferreira"]),
}
TRANSLITERATIONS: dict[str, str] = {
    "Zhi Hao": "Zhihao", "Xiu Ying": "Xiuying", "Li Na": "Lina", "Harpreet": "Harprit", "Gurpreet": "Gurprit",
    "Jefferson": "Jeferson", "Yeferson": "Jeferson", "Brayan": "Bryan", "Heidy": "Heidi", "Yesenia": "Yessenia",
    "Jean-Baptiste": "Jean Baptiste", "Nadège": "Nadege", "Josías": "Josias", "Wilmer": "Wilmar",
    "Yuliana": "Juliana", "Sindy": "Cindy", "Keily": "Keyli", "Lesly": "Leslie", "Dayana": "Diana",
}

# (place, state, component, ERO field office that first holds the file)
APPREHENSION_PLACES: list[tuple[str, str, str, str, float]] = [
    ("Rio Grande Valley Sector, TX", "TX", "USBP", "Harlingen", 30.0),
    ("Del Rio Sector, TX", "TX", "USBP", "San Antonio", 10.0),
    ("Laredo Sector, TX", "TX", "USBP", "San Antonio", 5.0),
    ("El Paso Sector, TX", "TX", "USBP", "El Paso", 12.0),
    ("Big Bend Sector, TX", "TX", "USBP", "El Paso", 1.0),
    ("Tucson Sector, AZ", "AZ", "USBP", "Phoenix", 10.0),
    ("Yuma Sector, AZ", "AZ", "USBP", "Phoenix", 6.0),
    ("San Diego Sector, CA", "CA", "USBP", "San Diego", 8.0),
    ("El Centro Sector, CA", "CA", "USBP", "San Diego", 3.0),
    ("Hidalgo Port of Entry, TX", "TX", "OFO", "Harlingen", 3.0),
    ("San Ysidro Port of Entry, CA", "CA", "OFO", "San Diego", 4.0),
    ("Paso del Norte Port of Entry, TX", "TX", "OFO", "El Paso", 2.0),
    ("Miami International Airport, FL", "FL", "OFO", "Miami", 1.0),
    ("JFK International Airport, NY", "NY", "OFO", "New York City", 1.0),
]

# Sponsor cities: (city, state, zip prefix, ERO field office, weight)
CITIES: list[tuple[str, str, str, str, float]] = [
    ("Houston", "TX", "770", "Houston", 9.0),
    ("Dallas", "TX", "752", "Dallas", 4.0),
    ("Fort Worth", "TX", "761", "Dallas", 1.5),
    ("San Antonio", "TX", "782", "San Antonio", 2.0),
    ("Austin", "TX", "787", "San Antonio", 1.5),
    ("McAllen", "TX", "785", "Harlingen", 1.0),
    ("El Paso", "TX", "799", "El Paso", 1.0),
    ("Albuquerque", "NM", "871", "El Paso", 0.5),
    ("Los Angeles", "CA", "900", "Los Angeles", 7.0),
    ("Santa Ana", "CA", "927", "Los Angeles", 1.0),
    ("San Diego", "CA", "921", "San Diego", 1.0),
    ("Oakland", "CA", "946", "San Francisco", 2.0),
    ("San Francisco", "CA", "941", "San Francisco", 1.0),
    ("Miami", "FL", "331", "Miami", 5.0),
    ("Orlando", "FL", "328", "Miami", 2.0),
    ("Jacksonville", "FL", "322", "Miami", 1.0),
    ("New York", "NY", "100", "New York City", 4.0),
    ("Brentwood", "NY", "117", "New York City", 2.0),
    ("Rochester", "NY", "146", "Buffalo", 0.5),
    ("Newark", "NJ", "071", "Newark", 2.0),
    ("Elizabeth", "NJ", "072", "Newark", 1.5),
    ("Trenton", "NJ", "086", "Newark", 1.0),
    ("Silver Spring", "MD", "209", "Baltimore", 2.0),
    ("Baltimore", "MD", "212", "Baltimore", 1.5),
    ("Hyattsville", "MD", "207", "Baltimore", 1.5),
    ("Alexandria", "VA", "223", "Washington", 2.0),
    ("Manassas", "VA", "201", "Washington", 1.5),
    ("Washington", "DC", "200", "Washington", 1.0),
    ("Atlanta", "GA", "303", "Atlanta", 3.0),
    ("Gainesville", "GA", "305", "Atlanta", 1.0),
    ("Charlotte", "NC", "282", "Atlanta", 2.0),
    ("Raleigh", "NC", "276", "Atlanta", 1.0),
    ("Columbia", "SC", "292", "Atlanta", 0.5),
    ("Nashville", "TN", "372", "New Orleans", 2.0),
    ("Memphis", "TN", "381", "New Orleans", 1.0),
    ("New Orleans", "LA", "701", "New Orleans", 1.5),
    ("Birmingham", "AL", "352", "New Orleans", 0.5),
    ("Chicago", "IL", "606", "Chicago", 2.5),
    ("Indianapolis", "IN", "462", "Chicago", 1.0),
    ("Kansas City", "MO", "641", "Chicago", 0.5),
    ("Louisville", "KY", "402", "Chicago", 0.7),
    ("Milwaukee", "WI", "532", "Chicago", 0.4),
    ("Oklahoma City", "OK", "731", "Dallas", 0.6),
    ("Boston", "MA", "021", "Boston", 2.5),
    ("Providence", "RI", "029", "Boston", 0.8),
    ("Hartford", "CT", "061", "Boston", 0.8),
    ("Philadelphia", "PA", "191", "Philadelphia", 1.2),
    ("Wilmington", "DE", "198", "Philadelphia", 0.4),
    ("Detroit", "MI", "482", "Detroit", 0.6),
    ("Columbus", "OH", "432", "Detroit", 0.8),
    ("Denver", "CO", "802", "Denver", 1.0),
    ("Salt Lake City", "UT", "841", "Salt Lake City", 0.5),
    ("Las Vegas", "NV", "891", "Salt Lake City", 0.8),
    ("Phoenix", "AZ", "850", "Phoenix", 1.2),
    ("Seattle", "WA", "981", "Seattle", 0.8),
    ("Portland", "OR", "972", "Seattle", 0.5),
    ("Minneapolis", "MN", "554", "St. Paul", 0.5),
    ("Omaha", "NE", "681", "St. Paul", 0.5),
]

FIELD_OFFICES = [
    "Atlanta", "Baltimore", "Boston", "Buffalo", "Chicago", "Dallas", "Denver", "Detroit", "El Paso",
    "Harlingen", "Houston", "Los Angeles", "Miami", "New Orleans", "New York City", "Newark", "Philadelphia",
    "Phoenix", "Salt Lake City", "San Antonio", "San Diego", "San Francisco", "Seattle", "St. Paul",
    "Washington",
]

# Field office responsible for a state when the city is not known (area of responsibility).
STATE_OFFICE: dict[str, str] = {
    "GA": "Atlanta", "NC": "Atlanta", "SC": "Atlanta", "MD": "Baltimore", "MA": "Boston", "ME": "Boston",
    "NH": "Boston", "VT": "Boston", "RI": "Boston", "CT": "Boston", "IL": "Chicago", "IN": "Chicago",
    "WI": "Chicago", "MO": "Chicago", "KY": "Chicago", "KS": "Chicago", "OK": "Dallas", "CO": "Denver",
    "WY": "Denver", "MI": "Detroit", "OH": "Detroit", "NM": "El Paso", "TX": "Houston", "CA": "Los Angeles",
    "FL": "Miami", "PR": "Miami", "LA": "New Orleans", "MS": "New Orleans", "AL": "New Orleans",
    "AR": "New Orleans", "TN": "New Orleans", "NY": "New York City", "NJ": "Newark", "PA": "Philadelphia",
    "DE": "Philadelphia", "WV": "Philadelphia", "AZ": "Phoenix", "UT": "Salt Lake City",
    "NV": "Salt Lake City", "ID": "Salt Lake City", "MT": "Salt Lake City", "WA": "Seattle", "OR": "Seattle",
    "AK": "Seattle", "HI": "San Francisco", "MN": "St. Paul", "IA": "St. Paul", "NE": "St. Paul",
    "ND": "St. Paul", "SD": "St. Paul", "VA": "Washington", "DC": "Washington",
}
CITY_OFFICE: dict[tuple[str, str], str] = {(c, s): o for c, s, _z, o, _w in CITIES}


def office_for(city: str | None, state: str | None) -> str | None:
    """ERO field office whose area of responsibility covers a city (falls back to the state's office)."""
    if city and state and (city, state) in CITY_OFFICE:
        return CITY_OFFICE[(city, state)]
    return STATE_OFFICE.get(state or "")


STREET_NAMES = [
    "Main", "Oak", "Maple", "Cedar", "Pine", "Elm", "Washington", "Lincoln", "Jefferson", "Park", "Lake",
    "Hill", "Sunset", "Highland", "Riverside", "Church", "Mill", "Spring", "Willow", "Walnut", "Chestnut",
    "Franklin", "Madison", "Jackson", "Center", "Union", "Broad", "Market", "Grove", "Forest", "Meadow",
    "Valley", "Ridge", "Harbor", "Prospect", "Fairview", "Pleasant", "Magnolia", "Dogwood", "Poplar",
]
STREET_SUFFIXES = ["St", "Ave", "Rd", "Dr", "Ln", "Blvd", "Ct", "Pl", "Way", "Ter"]

# Immigration courts: field office -> (court name, street, city, state, zip)
COURTS: dict[str, tuple[str, str, str, str, str]] = {
    "Atlanta": ("Atlanta Immigration Court", "180 Spring St SW, Suite 241", "Atlanta", "GA", "30303"),
    "Baltimore": ("Baltimore Immigration Court", "31 Hopkins Plz, Room 440", "Baltimore", "MD", "21201"),
    "Boston": ("Boston Immigration Court", "15 New Sudbury St, Room 320", "Boston", "MA", "02203"),
    "Buffalo": ("Batavia Immigration Court", "4250 Federal Dr, Suite 2", "Batavia", "NY", "14020"),
    "Chicago": ("Chicago Immigration Court", "525 W Van Buren St, Suite 500", "Chicago", "IL", "60607"),
    "Dallas": ("Dallas Immigration Court", "1100 Commerce St, Suite 1060", "Dallas", "TX", "75242"),
    "Denver": ("Denver Immigration Court", "1961 Stout St, Suite 3101", "Denver", "CO", "80294"),
    "Detroit": ("Detroit Immigration Court", "477 Michigan Ave, Suite 440", "Detroit", "MI", "48226"),
    "El Paso": ("El Paso Immigration Court", "700 E San Antonio Ave, Suite 750", "El Paso", "TX", "79901"),
    "Harlingen": ("Harlingen Immigration Court", "2009 W Jefferson Ave, Suite 300", "Harlingen", "TX",
                  "78550"),
    "Houston": ("Houston Immigration Court", "600 Jefferson St, Suite 900", "Houston", "TX", "77002"),
    "Los Angeles": ("Los Angeles Immigration Court", "606 S Olive St, 15th Floor", "Los Angeles", "CA",
                    "90014"),
    "Miami": ("Miami Immigration Court", "333 S Miami Ave, Suite 700", "Miami", "FL", "33130"),
    "New Orleans": ("New Orleans Immigration Court", "1155 Canal St, Suite 500", "New Orleans", "LA",
                    "70112"),
    "New York City": ("New York Broadway Immigration Court", "290 Broadway, 12th Floor", "New York", "NY",
                      "10007"),
    "Newark": ("Newark Immigration Court", "970 Broad St, Room 1200", "Newark", "NJ", "07102"),
    "Philadelphia": ("Philadelphia Immigration Court", "900 Market St, Suite 504", "Philadelphia", "PA",
                     "19107"),
    "Phoenix": ("Phoenix Immigration Court", "250 N 7th Ave, Suite 300", "Phoenix", "AZ", "85007"),
    "Salt Lake City": ("Salt Lake City Immigration Court", "2975 Decker Lake Dr, Suite 200",
                       "West Valley City", "UT", "84119"),
    "San Antonio": ("San Antonio Immigration Court", "800 Dolorosa St, Suite 300", "San Antonio", "TX",
                    "78207"),
    "San Diego": ("San Diego Immigration Court", "401 W A St, Suite 800", "San Diego", "CA", "92101"),
    "San Francisco": ("San Francisco Immigration Court", "100 Montgomery St, Suite 800", "San Francisco",
                      "CA", "94104"),
    "Seattle": ("Seattle Immigration Court", "1000 2nd Ave, Suite 2500", "Seattle", "WA", "98104"),
    "St. Paul": ("Fort Snelling Immigration Court", "1 Federal Dr, Suite 1850", "Fort Snelling", "MN",
                 "55111"),
    "Washington": ("Annandale Immigration Court", "4245 Annandale Rd, Suite 300", "Annandale", "VA",
                   "22003"),
}

JUDGE_NAMES = [
    "Hon. A. Whitfield", "Hon. R. Castellanos", "Hon. M. Okafor", "Hon. L. Brennan", "Hon. S. Nakamura",
    "Hon. D. Alvarado", "Hon. K. Lindqvist", "Hon. P. Mensah", "Hon. J. Haddad", "Hon. E. Kowalski",
    "Hon. T. Ferreira", "Hon. C. Whitaker", "Hon. N. Gallagher", "Hon. V. Rios", "Hon. B. Osei",
    "Hon. G. Duarte", "Hon. H. Sorensen", "Hon. I. Petrov", "Hon. F. Moreau", "Hon. W. Ashby",
]

# Care providers: (name, type, city, state, zip, weight)
FACILITIES: list[tuple[str, str, str, str, str, float]] = [
    ("Casa Esperanza Children's Shelter", "shelter", "Brownsville", "TX", "78520", 8.0),
    ("Rio Valley Youth Shelter", "shelter", "San Benito", "TX", "78586", 7.0),
    ("Hill Country Children's Center", "shelter", "San Antonio", "TX", "78207", 6.0),
    ("Gulf Coast Youth Home", "shelter", "Houston", "TX", "77002", 6.0),
    ("Desert Sky Children's Shelter", "shelter", "Phoenix", "AZ", "85004", 5.0),
    ("Sonoran Youth Residence", "shelter", "Tucson", "AZ", "85701", 3.0),
    ("Pacific Harbor Children's Home", "shelter", "San Diego", "CA", "92101", 3.0),
    ("Bay Area Youth Shelter", "shelter", "Fremont", "CA", "94538", 2.0),
    ("Sunshine State Children's Center", "shelter", "Homestead", "FL", "33030", 3.0),
    ("Lakeshore Youth Shelter", "shelter", "Chicago", "IL", "60607", 3.0),
    ("Hudson Valley Children's Residence", "shelter", "Dobbs Ferry", "NY", "10522", 3.0),
    ("Piedmont Youth Home", "shelter", "Raleigh", "NC", "27601", 1.5),
    ("Cascade Children's Shelter", "shelter", "Tacoma", "WA", "98402", 1.5),
    ("Chesapeake Youth Shelter", "shelter", "Baltimore", "MD", "21201", 1.5),
    ("Northstar Staff-Secure Program", "staff_secure", "Houston", "TX", "77002", 1.0),
    ("Mesa Verde Staff-Secure Residence", "staff_secure", "Phoenix", "AZ", "85004", 0.5),
    ("Blue Ridge Secure Youth Center", "secure", "Staunton", "VA", "24401", 0.3),
    ("Lone Star Secure Care", "secure", "Dallas", "TX", "75201", 0.2),
    ("Family Bridges Transitional Foster Care", "transitional_foster_care", "Grand Rapids", "MI", "49503", 1.5),
    ("Open Door Foster Care Network", "transitional_foster_care", "Miami", "FL", "33130", 1.2),
    ("New Roots Transitional Foster Care", "transitional_foster_care", "New York", "NY", "10007", 1.2),
    ("Harbor Light Long-Term Foster Care", "long_term_foster_care", "Seattle", "WA", "98104", 0.6),
    ("Heartland Long-Term Foster Care", "long_term_foster_care", "Chicago", "IL", "60607", 0.6),
    ("Stillwater Residential Treatment Center", "residential_treatment_center", "Austin", "TX", "78701", 0.3),
    ("Meadowbrook Residential Treatment Center", "residential_treatment_center", "Syracuse", "NY", "13202", 0.2),
]
