package echo_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/annuaire/annuaire/services/echo"
)

// The course's iterative server with listen(5), TCP and UDP on one port.
func Example() {
	ctx := context.Background()
	ln, err := echo.Listen(ctx, "tcp", "127.0.0.1:0", 5) // socket, bind, listen(5)
	if err != nil {
		fmt.Println(err)
		return
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String()) // the same port for UDP
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := &echo.Server{Mode: "iterative"}
	go srv.Serve(ctx, ln)
	go srv.ServePacket(ctx, pc)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	io.WriteString(c, "bonjour\n")
	c.(*net.TCPConn).CloseWrite() // like nc -N: no more to send
	b, _ := io.ReadAll(c)
	fmt.Printf("%q\n", b)

	stop, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	fmt.Println(srv.Shutdown(stop))
	// Output:
	// "bonjour\n"
	// <nil>
}
