package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Steps of the client's journeys, shared by the tests of this package.

// roomPageReady is true once the room page shows its member list.
const roomPageReady = `document.querySelector("#room #member-list li") !== null`

// createRoom creates a room from the home page and waits for the room
// page. It returns the room id.
func (p *participant) createRoom(roomName, userName string) string {
	p.t.Helper()
	p.open("/")
	p.setValue("#room-name", roomName)
	p.setValue("#user-name", userName)
	p.click("#create-room")
	p.waitRoom()
	return eval[string](p, `document.querySelector("#room").dataset.roomId`)
}

// waitRoom waits for the room page.
func (p *participant) waitRoom() {
	p.t.Helper()
	p.waitFor(roomPageReady, "the room page")
}

// openOwnerTools unfolds the owner's panel of the room page.
func (p *participant) openOwnerTools() {
	p.t.Helper()
	p.waitFor(`!document.querySelector("#owner-tools").hidden`, "the owner tools")
	eval[bool](p, `document.querySelector("#owner-tools").open = true`)
}

// invite issues an invitation as the owner and returns its link.
func (p *participant) invite(singleUse bool) string {
	p.t.Helper()
	p.openOwnerTools()
	before := eval[string](p, `document.querySelector("#invite-link").value`)
	if eval[bool](p, `document.querySelector("#invite-single").checked`) != singleUse {
		p.click("#invite-single")
	}
	p.click("#invite-create")
	p.waitFor(fmt.Sprintf(`!document.querySelector("#invite-result").hidden && document.querySelector("#invite-link").value !== %q`, before),
		"a new invitation link")
	return eval[string](p, `document.querySelector("#invite-link").value`)
}

// joinByLink opens an invitation link, gives a username and waits for the
// room page.
func (p *participant) joinByLink(link, name string) {
	p.t.Helper()
	p.open(link)
	p.setValue("#join-name", name)
	p.click("#join-button")
	p.waitRoom()
}

// membersJS lists the member list as names, with " (away)" after the
// members who are not connected.
const membersJS = `[...document.querySelectorAll("#member-list li")].map(li =>
	li.querySelector(".member-name").textContent + (li.dataset.online === "true" ? "" : " (away)"))`

// waitMembers waits until the member list is exactly want, in order: each
// a name, followed by " (away)" for a member not connected.
func (p *participant) waitMembers(want ...string) {
	p.t.Helper()
	j := jsonText(want)
	p.waitFor(fmt.Sprintf(`JSON.stringify(%s) === %s`, membersJS, jsString(j)), "the member list "+j)
}

// members returns the member list as waitMembers describes it.
func (p *participant) members() []string {
	p.t.Helper()
	return eval[[]string](p, membersJS)
}

// leaveForNow leaves the room through the leave dialog and waits for the
// home page.
func (p *participant) leaveForNow() {
	p.t.Helper()
	p.click("#leave-button")
	p.click("#leave-now")
	p.waitFor(`document.querySelector("#create-room") !== null`, "the home page")
}

// bannerState is the connection banner's state when it shows, else "".
const bannerState = `(b => b.hidden ? "" : b.dataset.state)(document.querySelector("#conn-banner"))`

// jsonText is v as JSON.stringify writes it (no HTML escaping).
func jsonText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string { return jsonText(s) }
