"""Every diagram in bpmn/ carries complete diagram interchange (bpmndi), so it opens in a
modeler and renders for staff: one shape per flow node and lane, one edge per sequence flow
whose ends touch the shapes they connect. A change to the process that forgets the layout
fails here instead of showing up as a broken picture.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from lxml import etree

REPO = Path(__file__).resolve().parents[2]
DIAGRAMS = sorted((REPO / "bpmn").glob("*.bpmn"))

NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
    "di": "http://www.omg.org/spec/DD/20100524/DI",
}
BPMN = "{%s}" % NS["bpmn"]
TOLERANCE = 5.0  # px an edge end may sit off its shape's outline

FLOW_NODE_TYPES = {
    "startEvent", "endEvent", "intermediateThrowEvent", "intermediateCatchEvent", "boundaryEvent",
    "task", "userTask", "scriptTask", "serviceTask", "businessRuleTask", "manualTask",
    "sendTask", "receiveTask", "exclusiveGateway", "parallelGateway", "inclusiveGateway",
    "eventBasedGateway", "complexGateway", "subProcess", "callActivity", "transaction",
}


def _local(el) -> str:
    return etree.QName(el).localname


def _is_flow_node(el) -> bool:
    if not isinstance(el.tag, str) or not el.tag.startswith(BPMN):
        return False
    name = _local(el)
    return name in FLOW_NODE_TYPES or name.endswith(("Event", "Task", "Gateway"))


class Diagram:
    def __init__(self, path: Path):
        self.path = path
        self.root = etree.parse(str(path)).getroot()
        self.processes = self.root.findall("bpmn:process", NS)
        self.flow_nodes = {el.get("id"): el for process in self.processes
                           for el in process.iter() if _is_flow_node(el)}
        self.lanes = {el.get("id"): el for el in self.root.iterfind(".//bpmn:lane", NS)}
        self.flows = {el.get("id"): el for el in self.root.iterfind(".//bpmn:sequenceFlow", NS)}
        self.planes = self.root.findall("bpmndi:BPMNDiagram/bpmndi:BPMNPlane", NS)
        self.shapes: dict[str, list] = {}
        self.edges: dict[str, list] = {}
        for plane in self.planes:
            for shape in plane.iterfind("bpmndi:BPMNShape", NS):
                self.shapes.setdefault(shape.get("bpmnElement"), []).append(shape)
            for edge in plane.iterfind("bpmndi:BPMNEdge", NS):
                self.edges.setdefault(edge.get("bpmnElement"), []).append(edge)

    def bounds(self, element_id: str) -> tuple[float, float, float, float]:
        b = self.shapes[element_id][0].find("dc:Bounds", NS)
        return tuple(float(b.get(k)) for k in ("x", "y", "width", "height"))

    @staticmethod
    def waypoints(edge) -> list[tuple[float, float]]:
        return [(float(p.get("x")), float(p.get("y"))) for p in edge.iterfind("di:waypoint", NS)]


@pytest.fixture(scope="module", params=DIAGRAMS, ids=lambda p: p.name)
def diagram(request) -> Diagram:
    return Diagram(request.param)


def test_there_are_diagrams():
    assert DIAGRAMS, "no bpmn/*.bpmn found"


def test_every_process_has_a_plane(diagram):
    assert diagram.planes, f"{diagram.path.name}: no bpmndi:BPMNDiagram/BPMNPlane"
    planned = {plane.get("bpmnElement") for plane in diagram.planes}
    for collaboration in diagram.root.iterfind("bpmn:collaboration", NS):
        if collaboration.get("id") in planned:
            planned |= {p.get("processRef") for p in collaboration.iterfind("bpmn:participant", NS)}
    missing = [p.get("id") for p in diagram.processes if p.get("id") not in planned]
    assert not missing, f"{diagram.path.name}: no BPMNPlane for process {missing}"


def test_every_flow_node_and_lane_has_exactly_one_shape(diagram):
    assert diagram.flow_nodes, f"{diagram.path.name}: no flow nodes found"
    problems = [f"{kind} {element_id}: {len(diagram.shapes.get(element_id, []))} BPMNShapes"
                for kind, elements in (("flow node", diagram.flow_nodes), ("lane", diagram.lanes))
                for element_id in elements if len(diagram.shapes.get(element_id, [])) != 1]
    assert not problems, f"{diagram.path.name}: " + "; ".join(problems)
    for element_id in list(diagram.flow_nodes) + list(diagram.lanes):
        assert diagram.shapes[element_id][0].find("dc:Bounds", NS) is not None, \
            f"{diagram.path.name}: shape of {element_id} has no dc:Bounds"


def test_every_sequence_flow_has_one_edge_with_waypoints(diagram):
    problems = []
    for flow_id in diagram.flows:
        edges = diagram.edges.get(flow_id, [])
        if len(edges) != 1:
            problems.append(f"{flow_id}: {len(edges)} BPMNEdges")
        elif len(Diagram.waypoints(edges[0])) < 2:
            problems.append(f"{flow_id}: fewer than 2 waypoints")
    assert not problems, f"{diagram.path.name}: " + "; ".join(problems)


def test_no_di_for_missing_elements(diagram):
    known = {el.get("id") for el in diagram.root.iter() if isinstance(el.tag, str)
             and el.tag.startswith(BPMN) and el.get("id")}
    dangling = sorted((set(diagram.shapes) | set(diagram.edges)) - known)
    assert not dangling, f"{diagram.path.name}: DI refers to unknown elements {dangling}"


def _distance_to_outline(point, bounds, kind: str) -> float:
    px, py = point
    x, y, w, h = bounds
    if kind.endswith("Event"):  # circle
        return abs(math.hypot(px - (x + w / 2), py - (y + h / 2)) - min(w, h) / 2)
    if kind.endswith("Gateway"):  # diamond |dx|/(w/2) + |dy|/(h/2) = 1
        dx, dy = abs(px - (x + w / 2)), abs(py - (y + h / 2))
        scale = dx / (w / 2) + dy / (h / 2)
        return abs(scale - 1) * math.hypot(w / 2, h / 2) / math.sqrt(2)
    # rectangle outline
    inside = x <= px <= x + w and y <= py <= y + h
    if inside:
        return min(px - x, x + w - px, py - y, y + h - py)
    return math.hypot(max(x - px, 0, px - x - w), max(y - py, 0, py - y - h))


def test_edges_start_and_end_on_their_shapes(diagram):
    problems = []
    for flow_id, flow in diagram.flows.items():
        edges = diagram.edges.get(flow_id, [])
        if len(edges) != 1:
            continue  # reported by test_every_sequence_flow_has_one_edge_with_waypoints
        points = Diagram.waypoints(edges[0])
        for end, point, ref in (("start", points[0], flow.get("sourceRef")),
                                ("end", points[-1], flow.get("targetRef"))):
            if ref not in diagram.shapes:
                problems.append(f"{flow_id}: {ref} has no shape")
                continue
            kind = _local(diagram.flow_nodes[ref]) if ref in diagram.flow_nodes else ""
            off = _distance_to_outline(point, diagram.bounds(ref), kind)
            if off > TOLERANCE:
                problems.append(f"{flow_id}: {end} {point} is {off:.0f}px off {ref}")
    assert not problems, f"{diagram.path.name}: " + "; ".join(problems)


def test_boundary_events_sit_on_their_host(diagram):
    problems = []
    for event_id, event in diagram.flow_nodes.items():
        if _local(event) != "boundaryEvent":
            continue
        host = event.get("attachedToRef")
        if event_id not in diagram.shapes or host not in diagram.shapes:
            continue
        x, y, w, h = diagram.bounds(event_id)
        center = (x + w / 2, y + h / 2)
        off = _distance_to_outline(center, diagram.bounds(host), "")
        if off > TOLERANCE:
            problems.append(f"{event_id} is {off:.0f}px off the edge of {host}")
    assert not problems, f"{diagram.path.name}: " + "; ".join(problems)


def test_lanes_enclose_their_nodes(diagram):
    problems = []
    for lane_id, lane in diagram.lanes.items():
        if lane_id not in diagram.shapes:
            continue  # reported by test_every_flow_node_and_lane_has_exactly_one_shape
        lx, ly, lw, lh = diagram.bounds(lane_id)
        for ref in lane.iterfind("bpmn:flowNodeRef", NS):
            node_id = ref.text.strip()
            if node_id not in diagram.shapes:
                continue
            x, y, w, h = diagram.bounds(node_id)
            if not (lx <= x and ly <= y and x + w <= lx + lw and y + h <= ly + lh):
                problems.append(f"{node_id} lies outside lane {lane_id}")
    assert not problems, f"{diagram.path.name}: " + "; ".join(problems)


def test_flow_node_shapes_do_not_overlap(diagram):
    def ancestors(el):
        return {a.get("id") for a in el.iterancestors()}

    nodes = [(node_id, el) for node_id, el in diagram.flow_nodes.items() if node_id in diagram.shapes]
    problems = []
    for i, (a_id, a) in enumerate(nodes):
        for b_id, b in nodes[i + 1:]:
            if a_id in ancestors(b) or b_id in ancestors(a):
                continue  # a sub-process contains its children
            if a.get("attachedToRef") == b_id or b.get("attachedToRef") == a_id:
                continue  # a boundary event overlaps its host by design
            ax, ay, aw, ah = diagram.bounds(a_id)
            bx, by, bw, bh = diagram.bounds(b_id)
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                problems.append(f"{a_id} overlaps {b_id}")
    assert not problems, f"{diagram.path.name}: " + "; ".join(problems)
