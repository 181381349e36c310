"""Reference data every service shares: districts (GB/T 2260), request categories, departments.

Districts are fixed by the administrative division; categories and departments are the
city's organisation and are expected to grow (which department handles what is decided in
bpmn/route_department.dmn, not here).
"""
from __future__ import annotations

CITY = ("210900", "阜新市")

DISTRICTS = {
    "210921": "阜新蒙古族自治县",
    "210922": "彰武县",
    "210902": "海州区",
    "210911": "细河区",
    "210904": "太平区",
    "210903": "新邱区",
    "210905": "清河门区",
}
_DISTRICT_BY_NAME = {name: code for code, name in DISTRICTS.items()}

CATEGORIES = {
    "housing": "住房物业",
    "heating": "供暖",
    "water": "供水排水",
    "city_management": "市容城管",
    "environment": "生态环境",
    "traffic": "交通出行",
    "labour": "劳动社保",
    "market": "市场消费",
    "public_security": "社会治安",
    "education": "教育",
    "health": "医疗卫生",
    "civil_affairs": "民政救助",
    "other": "其他",
}

DEPARTMENTS = {
    "zhujian": "市住房和城乡建设局",
    "chengguan": "市城市管理综合行政执法局",
    "huanbao": "市生态环境局",
    "jiaotong": "市交通运输局",
    "shuiwu": "市水务局",
    "renshe": "市人力资源和社会保障局",
    "shichang": "市市场监督管理局",
    "gongan": "市公安局",
    "jiaoyu": "市教育局",
    "weijian": "市卫生健康委员会",
    "minzheng": "市民政局",
}

CHANNELS = {
    "web": "网上（小程序）",
    "phone": "来电",
    "hotline_12345": "12345热线",
    "grid": "网格员代诉",
    "walk_in": "来访",
    "open311": "Open311接口",
}


def district_code(value: str) -> str | None:
    """Accept a district code or its Simplified Chinese name; None if unknown."""
    value = (value or "").strip()
    if value in DISTRICTS:
        return value
    return _DISTRICT_BY_NAME.get(value)
